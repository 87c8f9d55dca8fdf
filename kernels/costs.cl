## costs.cl: cost values and their gradients with respect to the network's output.
##
##   quadratic:       C = sum((a - y)^2) / (2 batch),            dC/da = (a - y) / batch
##   cross_entropy after a sigmoid (independent binary outputs):
##                    C = -sum(y ln a + (1 - y) ln(1 - a)) / batch
##   cross_entropy after a softmax (rows of y sum to 1: one-hot or probabilities):
##                    C = -sum(y ln a) / batch
##   In both, the activation's derivative folds in: dC/dz = (a - y) / batch, finite where the
##   activation saturates. Their values are computed from the logits z, never from ln a, so
##   that they stay exact for any z: softplus(z) - y z, and logsumexp(z) - y . z per row.
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>

// delta = (a - y) * scale: dC/da of the quadratic cost, and dC/dz of the cross-entropies.
__kernel void difference(__global const real *a_p, const index_t a_off, __global const real *y_p, const index_t y_off,
                         __global real *delta_p, const index_t delta_off, const real scale, const index_t n) {
<%v:elementwise n="n" inputs="${['a', 'y']}" outputs="${['delta']}">delta = (a - y) * scale;</%v:elementwise>
}

## One work-group sums `term` over `count` items (elements or rows) into out[out_off], scaled.
## A cost is read once per call or per epoch, so one group is enough.
<%def name="cost_sum(name, count, term)">
__kernel void ${name}(__global const real *xs, const index_t x_off, __global const real *ys, const index_t y_off,
                      __global real *out, const index_t out_off, const real scale,
                      const index_t rows, const index_t cols, __local real *partial) {
    const index_t lid = get_local_id(0), size = get_local_size(0);
    real sum = 0;
    for (index_t i = lid; i < ${count}; i += size) {
        ${term}
    }
    partial[lid] = sum;
    for (index_t stride = size / 2; stride > 0; stride /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < stride) partial[lid] += partial[lid + stride];
    }
    if (lid == 0) out[out_off] = partial[0] * scale;
}
</%def>
${cost_sum("quadratic_sum", "rows * cols", """const real d = xs[x_off + i] - ys[y_off + i];
        sum += d * d;""")}
## xs holds the logits z: -(y ln sigmoid(z) + (1 - y) ln(1 - sigmoid(z))) = max(z, 0) - y z + ln(1 + exp(-|z|))
${cost_sum("sigmoid_cross_entropy_sum", "rows * cols", """const real z = xs[x_off + i];
        sum += fmax(z, (real)0) - ys[y_off + i] * z + log1p(exp(-fabs(z)));""")}
## per row: -sum_j y_j ln softmax(z)_j = sum_j y_j (logsumexp(z) - z_j)
${cost_sum("softmax_cross_entropy_sum", "rows", """__global const real *z = xs + x_off + (size_t)i * cols;
        __global const real *y = ys + y_off + (size_t)i * cols;
        real top = z[0];
        for (index_t j = 1; j < cols; j++) top = fmax(top, z[j]);
        real total = 0;
        for (index_t j = 0; j < cols; j++) total += exp(z[j] - top);
        const real lse = top + log(total);
        for (index_t j = 0; j < cols; j++) sum += y[j] * (lse - z[j]);""")}
