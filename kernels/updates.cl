## updates.cl: optimizer steps on parameters w with gradients g, as PyTorch defines them
## (torch.optim.SGD and torch.optim.Adam; weight decay wd adds wd * w to the gradient).
##
##   sgd:           w -= lr * (g + wd w)
##   sgd_momentum:  d = g + wd w;  b = momentum b + d  (b starts at 0, so b = d at the first step)
##                  w -= lr * (d + momentum b)  with Nesterov,  w -= lr * b  without
##   adam:          d = g + wd w;  m = beta1 m + (1 - beta1) d;  v = beta2 v + (1 - beta2) d^2
##                  w *= shrink;  w -= step_size * m / (sqrt(v) / sqrt_bias2 + eps)
##                  with step_size = lr / (1 - beta1^t), sqrt_bias2 = sqrt(1 - beta2^t) at step t;
##                  shrink = 1 - lr wd for AdamW's decoupled decay (then wd = 0 in d), else 1
##
##   rmsprop:       d = g + wd w;  v = alpha v + (1 - alpha) d^2;  s = sqrt(v) + eps, or centered
##                  (a = alpha a + (1 - alpha) d) s = sqrt(v - a^2) + eps;  with momentum
##                  b = momentum b + d / s, w -= lr b;  without, w -= lr d / s
##   clip_scale:    g *= max_norm / (norm + 1e-6) where that is below 1, norm = sqrt(the sum of
##                  `groups` partial sums of squares that memory.cl's square_sums wrote)
##
## Param keep: each kernel also writes w as it was before the step into `kept` (what training
## falls back on when its cost stops being finite), in the pass that reads w anyway.
<%
    kept = ", real *kept" if keep else ""
    keep_out = ["kept"] if keep else []
    keep_w = "kept = w;" if keep else ""
%><%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>

${kernel("sgd", "real *w, const real *g, real learning_rate, real weight_decay, index_t n" + kept)} {
<%v:elementwise n="n" inputs="${['w', 'g']}" outputs="${['w'] + keep_out}">
    ${keep_w}
    w -= learning_rate * (g + weight_decay * w);
</%v:elementwise>
}

${kernel("sgd_momentum", "real *w, const real *g, real *b, real learning_rate, real momentum, "
                         "real weight_decay, uint nesterov, index_t n" + kept)} {
<%v:elementwise n="n" inputs="${['w', 'g', 'b']}" outputs="${['w', 'b'] + keep_out}">
    ${keep_w}
    g += weight_decay * w;
    b = momentum * b + g;
    w -= learning_rate * (nesterov ? g + momentum * b : b);
</%v:elementwise>
}

${kernel("adam", "real *w, const real *g, real *m, real *v, real step_size, real beta1, real beta2, "
                 "real eps, real sqrt_bias2, real weight_decay, real shrink, index_t n" + kept)} {
<%v:elementwise n="n" inputs="${['w', 'g', 'm', 'v']}" outputs="${['w', 'm', 'v'] + keep_out}">
    ${keep_w}
    g += weight_decay * w;
    w *= shrink;
    m = beta1 * m + (1 - beta1) * g;
    v = beta2 * v + (1 - beta2) * g * g;
    w -= step_size * m / (sqrt(v) / sqrt_bias2 + eps);
</%v:elementwise>
}

<%
    centered, momentum = context.get("centered", False), context.get("momentum", False)
    rms_state = (["a"] if centered else []) + (["b"] if momentum else [])
    rms_args = "".join(", real *" + x for x in rms_state)
%>
${kernel("rmsprop", "real *w, const real *g, real *v" + rms_args + ", real learning_rate, real alpha, real eps, "
                    "real weight_decay, real momentum, index_t n" + kept)} {
<%v:elementwise n="n" inputs="${['w', 'g', 'v'] + rms_state}" outputs="${['w', 'v'] + rms_state + keep_out}">
    ${keep_w}
    g += weight_decay * w;
    v = alpha * v + (1 - alpha) * g * g;
% if centered:
    a = alpha * a + (1 - alpha) * g;
    const ${"real%d" % v.attr.vector_width(dtype)} s = sqrt(v - a * a) + eps;
% else:
    const ${"real%d" % v.attr.vector_width(dtype)} s = sqrt(v) + eps;
% endif
% if momentum:
    b = momentum * b + g / s;
    w -= learning_rate * b;
% else:
    w -= learning_rate * g / s;
% endif
</%v:elementwise>
}

${kernel("clip_scale", "real *g, const real *partial_sums, uint groups, real max_norm, index_t n")} {
    real sum = 0;
    for (uint i = 0; i < groups; i++) sum += partial_sums_p[partial_sums_off + i];
    const real scale = max_norm / (sqrt(sum) + (real)1e-6);
    if (scale >= 1) return;
<%v:elementwise n="n" inputs="${['g']}" outputs="${['g']}">
    g *= scale;
</%v:elementwise>
}
