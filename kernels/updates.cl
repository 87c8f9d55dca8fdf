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
