## updates.cl: optimizer steps on parameters w with gradients g.
##
##   sgd: w -= learning_rate * g
<%include file="common.cl"/>

__kernel void sgd(__global real *w, const index_t w_off, __global const real *g, const index_t g_off,
                  const real learning_rate, const index_t n) {
    const index_t i = get_global_id(0);
    if (i >= n) return;
    w[w_off + i] -= learning_rate * g[g_off + i];
}
