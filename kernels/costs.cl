## costs.cl: cost values and their gradients with respect to the network's output a.
##
##   quadratic:     C = sum((a - y)^2) / (2 batch),             dC/da = (a - y) / batch
##   cross_entropy: C = -sum(y ln a + (1 - y) ln(1 - a)) / batch (sigmoid outputs); with the
##                  sigmoid's derivative a (1 - a) folded in, dC/dz = (a - y) / batch, which
##                  stays finite where the sigmoid saturates. ln is kept >= -100 (as PyTorch).
<%include file="common.cl"/>
#define LOG_FLOOR ((real)-100)

// delta = (a - y) * scale: dC/da of the quadratic cost, and dC/dz of sigmoid + cross-entropy.
__kernel void difference(__global const real *a, const index_t a_off, __global const real *y, const index_t y_off,
                         __global real *delta, const index_t delta_off, const real scale, const index_t n) {
    const index_t i = get_global_id(0);
    if (i >= n) return;
    delta[delta_off + i] = (a[a_off + i] - y[y_off + i]) * scale;
}

<%def name="cost_sum(name, term)">
// out[0] = scale * sum of ${name}'s terms, by one work-group (a cost is read once per call).
__kernel void ${name}_sum(__global const real *as, const index_t a_off, __global const real *ys, const index_t y_off,
                          __global real *out, const real scale, const index_t n, __local real *partial) {
    const index_t lid = get_local_id(0), size = get_local_size(0);
    real sum = 0;
    for (index_t i = lid; i < n; i += size) {
        const real a = as[a_off + i], y = ys[y_off + i];
        sum += ${term};
    }
    partial[lid] = sum;
    for (index_t stride = size / 2; stride > 0; stride /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < stride) partial[lid] += partial[lid + stride];
    }
    if (lid == 0) out[0] = partial[0] * scale;
}
</%def>
${cost_sum("quadratic", "(a - y) * (a - y)")}
${cost_sum("cross_entropy", "-(y * fmax(log(a), LOG_FLOOR) + (1 - y) * fmax(log(1 - a), LOG_FLOOR))")}
