## updates.cl: optimizer steps on parameters w with gradients g, as PyTorch defines them
## (torch.optim.SGD and torch.optim.Adam; weight decay wd adds wd * w to the gradient).
##
##   sgd:           w -= lr * (g + wd w)
##   sgd_momentum:  d = g + wd w;  b = momentum b + d  (b starts at 0, so b = d at the first step)
##                  w -= lr * (d + momentum b)  with Nesterov,  w -= lr * b  without
##   adam:          d = g + wd w;  m = beta1 m + (1 - beta1) d;  v = beta2 v + (1 - beta2) d^2
##                  w -= step_size * m / (sqrt(v) / sqrt_bias2 + eps)
##                  with step_size = lr / (1 - beta1^t), sqrt_bias2 = sqrt(1 - beta2^t) at step t
<%include file="common.cl"/>

__kernel void sgd(__global real *w, const index_t w_off, __global const real *g, const index_t g_off,
                  const real learning_rate, const real weight_decay, const index_t n) {
    const index_t i = get_global_id(0);
    if (i >= n) return;
    const real wi = w[w_off + i];
    w[w_off + i] = wi - learning_rate * (g[g_off + i] + weight_decay * wi);
}

__kernel void sgd_momentum(__global real *w, const index_t w_off, __global const real *g, const index_t g_off,
                           __global real *b, const index_t b_off, const real learning_rate, const real momentum,
                           const real weight_decay, const uint nesterov, const index_t n) {
    const index_t i = get_global_id(0);
    if (i >= n) return;
    const real wi = w[w_off + i];
    const real d = g[g_off + i] + weight_decay * wi;
    const real bi = momentum * b[b_off + i] + d;
    b[b_off + i] = bi;
    w[w_off + i] = wi - learning_rate * (nesterov ? d + momentum * bi : bi);
}

__kernel void adam(__global real *w, const index_t w_off, __global const real *g, const index_t g_off,
                   __global real *m, const index_t m_off, __global real *v, const index_t v_off,
                   const real step_size, const real beta1, const real beta2, const real eps,
                   const real sqrt_bias2, const real weight_decay, const index_t n) {
    const index_t i = get_global_id(0);
    if (i >= n) return;
    const real wi = w[w_off + i];
    const real d = g[g_off + i] + weight_decay * wi;
    const real mi = beta1 * m[m_off + i] + (1 - beta1) * d;
    const real vi = beta2 * v[v_off + i] + (1 - beta2) * d * d;
    m[m_off + i] = mi;
    v[v_off + i] = vi;
    w[w_off + i] = wi - step_size * mi / (sqrt(vi) / sqrt_bias2 + eps);
}
