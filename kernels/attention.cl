## attention.cl: scaled dot-product attention, every sample and head in one launch.
##
## The queries, keys and values are heads of rows: element d of head h at position t of sample b
## is at  at + (b * seq + t) * stride + h * head_size + d  of its array (the projections' output
## (batch, seq, 3 * heads * head_size) holds all three, `at` apart). Scores and probabilities are
## (batch * heads, seq, seq). Dimension 2 of every launch is b * heads + h. Each sum runs in a
## fixed order (the same bits on every run); with `causal`, position i sees positions j <= i only.
<%include file="common.cl"/>

#define HEAD(a, stride, at, b, t, h) (a##_p + a##_off + (at) + ((size_t)(b) * seq + (t)) * (stride) + (size_t)(h) * head_size)

// out[bh, i, j] = scale * sum over d of x[b, i, h, d] * y[b, j, h, d] (0 where causal and j > i).
// Dimension 0: j; dimension 1: i.
${kernel("dots", "const real *x, const real *y, real *out, index_t seq, index_t heads, index_t head_size, "
                 "index_t x_stride, index_t x_at, index_t y_stride, index_t y_at, real scale, int causal")} {
    const index_t j = get_global_id(0), i = get_global_id(1), bh = get_global_id(2);
    if (j >= seq || i >= seq) return;
    const index_t b = bh / heads, h = bh % heads;
    real sum = 0;
    if (!causal || j <= i) {
        __global const real *xr = HEAD(x, x_stride, x_at, b, i, h);
        __global const real *yr = HEAD(y, y_stride, y_at, b, j, h);
        for (index_t d = 0; d < head_size; d++) sum += xr[d] * yr[d];
    }
    out_p[out_off + ((size_t)bh * seq + i) * seq + j] = sum * scale;
}

// out[b, i, h, d] = sum over j of w[bh, i, j] * y[b, j, h, d] (j <= i where causal).
// Dimension 0: d; dimension 1: i.
${kernel("weighted_sum", "const real *w, const real *y, real *out, index_t seq, index_t heads, index_t head_size, "
                "index_t y_stride, index_t y_at, index_t out_stride, index_t out_at, int causal")} {
    const index_t d = get_global_id(0), i = get_global_id(1), bh = get_global_id(2);
    if (d >= head_size || i >= seq) return;
    const index_t b = bh / heads, h = bh % heads;
    __global const real *wr = w_p + w_off + ((size_t)bh * seq + i) * seq;
    __global const real *yc = HEAD(y, y_stride, y_at, b, 0, h) + d;
    const index_t end = causal ? i + 1 : seq;
    real sum = 0;
    for (index_t j = 0; j < end; j++) sum += wr[j] * yc[(size_t)j * y_stride];
    HEAD(out, out_stride, out_at, b, i, h)[d] = sum;
}

// out[b, j, h, d] = sum over i of w[bh, i, j] * y[b, i, h, d] (i >= j where causal): weighted_sum with w
// transposed. Dimension 0: d; dimension 1: j.
${kernel("weighted_sum_transposed", "const real *w, const real *y, real *out, index_t seq, index_t heads, "
                           "index_t head_size, index_t y_stride, index_t y_at, index_t out_stride, index_t out_at, "
                           "int causal")} {
    const index_t d = get_global_id(0), j = get_global_id(1), bh = get_global_id(2);
    if (d >= head_size || j >= seq) return;
    const index_t b = bh / heads, h = bh % heads;
    __global const real *wc = w_p + w_off + (size_t)bh * seq * seq + j;
    __global const real *yc = HEAD(y, y_stride, y_at, b, 0, h) + d;
    real sum = 0;
    for (index_t i = causal ? j : 0; i < seq; i++) sum += wc[(size_t)i * seq] * yc[(size_t)i * y_stride];
    HEAD(out, out_stride, out_at, b, j, h)[d] = sum;
}

// p[r, :] = the softmax of s[r, :] (row r = bh * seq + i), over j <= i where causal and 0 beyond;
// less the row's largest first, so that no exp overflows. p may be s. One work-item per row.
${kernel("softmax", "const real *s, real *p, index_t rows, index_t seq, int causal")} {
    const index_t r = get_global_id(0);
    if (r >= rows) return;
    const index_t end = causal ? r % seq + 1 : seq;
    __global const real *sr = s_p + s_off + (size_t)r * seq;
    __global real *pr = p_p + p_off + (size_t)r * seq;
    real top = sr[0];
    for (index_t j = 1; j < end; j++) top = fmax(top, sr[j]);
    real total = 0;
    for (index_t j = 0; j < end; j++) {
        const real e = exp(sr[j] - top);
        pr[j] = e;
        total += e;
    }
    for (index_t j = 0; j < end; j++) pr[j] /= total;
    for (index_t j = end; j < seq; j++) pr[j] = 0;
}

// g[r, j] = scale * p[r, j] * (g[r, j] - sum over k of p[r, k] * g[r, k]): dC/ds from dC/dp
// (g) through the softmax p, in place. One work-item per row.
${kernel("softmax_backward", "const real *p, real *g, index_t rows, index_t seq, real scale, int causal")} {
    const index_t r = get_global_id(0);
    if (r >= rows) return;
    const index_t end = causal ? r % seq + 1 : seq;
    __global const real *pr = p_p + p_off + (size_t)r * seq;
    __global real *gr = g_p + g_off + (size_t)r * seq;
    real dot = 0;
    for (index_t j = 0; j < end; j++) dot += pr[j] * gr[j];
    for (index_t j = 0; j < end; j++) gr[j] = scale * pr[j] * (gr[j] - dot);
    for (index_t j = end; j < seq; j++) gr[j] = 0;
}
