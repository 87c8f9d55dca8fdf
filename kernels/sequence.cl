## sequence.cl: the mean over the positions of (batch, seq, features) samples, and its gradient.
<%include file="common.cl"/>

// out[b, d] = the mean over t of x[b, t, d], in order of t. Dimension 0: d; dimension 1: b.
${kernel("sequence_mean", "const real *x, real *out, index_t batch, index_t seq, index_t features")} {
    const index_t d = get_global_id(0), b = get_global_id(1);
    if (d >= features || b >= batch) return;
    __global const real *column = x_p + x_off + (size_t)b * seq * features + d;
    real sum = 0;
    for (index_t t = 0; t < seq; t++) sum += column[(size_t)t * features];
    out_p[out_off + (size_t)b * features + d] = sum / seq;
}

// dx[b, t, d] = delta[b, d] / seq. Dimension 0: d; dimension 1: b * seq + t.
${kernel("sequence_mean_backward", "const real *delta, real *dx, index_t rows, index_t seq, index_t features")} {
    const index_t d = get_global_id(0), r = get_global_id(1);
    if (d >= features || r >= rows) return;
    dx_p[dx_off + (size_t)r * features + d] = delta_p[delta_off + (size_t)(r / seq) * features + d] / seq;
}
