## costs.cl: cost values and their gradients with respect to the network's output.
##
##   quadratic:       C = sum((a - y)^2) / (2 batch),            dC/da = (a - y) / batch
##   mae:             C = sum(|a - y|) / (batch outputs),        dC/da = sign(a - y) / (batch outputs)
##   huber (delta 1): C = sum(h(a - y)) / (batch outputs), h(d) = d^2 / 2 for |d| <= 1, |d| - 1/2
##                    beyond,                                    dC/da = clamp(a - y, -1, 1) / (batch outputs)
##   cross_entropy after a sigmoid (independent binary outputs):
##                    C = -sum(y ln a + (1 - y) ln(1 - a)) / batch
##   cross_entropy after a softmax (rows of y sum to 1: one-hot or probabilities):
##                    C = -sum(y ln a) / batch
##   cross_entropy after a log_softmax (a = ln p): C = -sum(y a) / batch, its value the softmax's
##   cross_entropy on a linear output: the outputs are logits, softmax's (sigmoid's for one output)
##   kl_divergence: the cross-entropy less the entropy of y (0 ln 0 = 0), so the same gradient
##   In each, the activation's derivative folds in: dC/dz = (p - y) / batch, finite where the
##   activation saturates. Their values are computed from the logits z, never from ln a, so
##   that they stay exact for any z: softplus(z) - y z, and logsumexp(z) - y . z per row.
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>

<%!
    # dC/da (or dC/dz) up to the scale, per element of the output a and target y, by kernel suffix
    DELTAS = {"": "(a - y)",                                 # quadratic, mse; cross-entropies: dC/dz
              "_exp": "(exp(a) - y)",                        # cross_entropy after a log_softmax (a = ln p)
              "_sigmoid": "(1 / (1 + exp(-a)) - y)",         # cross_entropy on one logit (a linear output)
              "_sign": "sign(a - y)",                        # mae (0 where a = y, as PyTorch's L1Loss)
              "_clamp": "clamp(a - y, (real)-1, (real)1)"}   # huber, delta 1
%>
// delta = DELTAS[suffix] * scale, elementwise.
% for suffix, expression in DELTAS.items():
${kernel("difference" + suffix, "const real *a, const real *y, real *delta, real scale, index_t n")} {
<%v:elementwise n="n" inputs="${['a', 'y']}" outputs="${['delta']}">delta = ${expression} * scale;</%v:elementwise>
}

% endfor
// delta = (softmax(a) - y) * scale per row of (rows, cols) logits a: cross-entropy on a linear
// output (PyTorch's CrossEntropyLoss). One work-item per row.
${kernel("softmax_difference", "const real *a, const real *y, real *delta, real scale, index_t rows, index_t cols")} {
    const index_t r = get_global_id(0);
    if (r >= rows) return;
    __global const real *z = a_p + a_off + (size_t)r * cols;
    __global const real *t = y_p + y_off + (size_t)r * cols;
    __global real *d = delta_p + delta_off + (size_t)r * cols;
    real top = z[0];
    for (index_t j = 1; j < cols; j++) top = fmax(top, z[j]);
    real total = 0;
    for (index_t j = 0; j < cols; j++) total += exp(z[j] - top);
    for (index_t j = 0; j < cols; j++) d[j] = (exp(z[j] - top) / total - t[j]) * scale;
}

## One work-group sums `term` over `count` items (elements or rows) into out[index], scaled; the
## term adds an item's part of the cost to `t`. A cost is read once per call or per epoch, so one
## group is enough. The <name>_delta variant also writes delta (`difference`, or
## `difference<suffix>` for <name>_delta<suffix>), saving a launch per training step; the
## <name>_weighted variant weighs item i by w[i / w_per] (sample weights: clnet.ops.costs).
<%def name="cost_sum(name, count, term, delta=False, suffix='', weighted=False)">
${kernel(name + ("_delta" if delta else "") + suffix + ("_weighted" if weighted else ""),
         "const real *x, const real *y, real *out, index_t index, real scale, index_t rows, index_t cols, "
         "local real *partial" + (", const real *a, real *delta, real delta_scale" if delta else "")
         + (", const real *w, index_t w_per" if weighted else ""))} {
    const index_t lid = get_local_id(0), size = get_local_size(0);
% if delta:
    for (index_t i = lid; i < rows * cols; i += size) {
        const real a = a_p[a_off + i], y = y_p[y_off + i];
        delta_p[delta_off + i] = ${DELTAS[suffix]} * delta_scale;
    }
% endif
    real sum = 0;
    for (index_t i = lid; i < ${count}; i += size) {
        real t = 0;
        ${term}
        sum += ${"w_p[w_off + i / w_per] * t" if weighted else "t"};
    }
    partial[lid] = sum;
    for (index_t stride = size / 2; stride > 0; stride /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < stride) partial[lid] += partial[lid + stride];
    }
    if (lid == 0) out_p[out_off + index] = partial[0] * scale;
}
</%def>
## Each cost's value: (name, count, term, the delta suffixes of its fused variants). x holds the
## output a (elementwise costs) or the logits z (the rest).
<%
    SIGMOID_CE = "const real z = x_p[x_off + i];\n        t = fmax(z, (real)0) - y_p[y_off + i] * z + log1p(exp(-fabs(z)));"
    ROW_LSE = """__global const real *z = x_p + x_off + (size_t)i * cols;
        __global const real *y = y_p + y_off + (size_t)i * cols;
        real top = z[0];
        for (index_t j = 1; j < cols; j++) top = fmax(top, z[j]);
        real total = 0;
        for (index_t j = 0; j < cols; j++) total += exp(z[j] - top);
        const real lse = top + log(total);"""
    VALUES = [
        ("quadratic_sum", "rows * cols", "const real d = x_p[x_off + i] - y_p[y_off + i];\n        t = d * d;", [""]),
        ("absolute_sum", "rows * cols", "t = fabs(x_p[x_off + i] - y_p[y_off + i]);", ["_sign"]),
        ## huber with delta 1: d^2 / 2 within 1 of the target, |d| - 1/2 beyond
        ("huber_sum", "rows * cols", "const real d = fabs(x_p[x_off + i] - y_p[y_off + i]);\n"
         "        t = d <= 1 ? (real)0.5 * d * d : d - (real)0.5;", ["_clamp"]),
        ## -(y ln sigmoid(z) + (1 - y) ln(1 - sigmoid(z))) = max(z, 0) - y z + ln(1 + exp(-|z|))
        ("sigmoid_cross_entropy_sum", "rows * cols", SIGMOID_CE, ["", "_sigmoid"]),
        ## the binary divergence: the cross-entropy less the target's entropy (0 ln 0 = 0)
        ("sigmoid_kl_sum", "rows * cols", SIGMOID_CE + """
        const real p = y_p[y_off + i];
        if (p > 0) t += p * log(p);
        if (p < 1) t += (1 - p) * log1p(-p);""", ["", "_sigmoid"]),
        ## per row: -sum_j y_j ln softmax(z)_j = sum_j y_j (logsumexp(z) - z_j)
        ("softmax_cross_entropy_sum", "rows", ROW_LSE + """
        for (index_t j = 0; j < cols; j++) t += y[j] * (lse - z[j]);""", ["", "_exp"]),
        ## per row: sum_j y_j (ln y_j - ln softmax(z)_j), 0 ln 0 = 0
        ("softmax_kl_sum", "rows", ROW_LSE + """
        for (index_t j = 0; j < cols; j++) if (y[j] > 0) t += y[j] * (log(y[j]) - z[j] + lse);""", ["", "_exp"]),
    ]
%>
% for name, count, term, suffixes in VALUES:
${cost_sum(name, count, term)}
${cost_sum(name, count, term, weighted=True)}
% for suffix in suffixes:
${cost_sum(name, count, term, True, suffix)}
% endfor
% endfor

## correct predictions per row, for accuracy: the largest output is the target's largest entry
## (class labels as one-hot rows), or, for one output, both sides of 0.5 agree.
${cost_sum("matches", "rows", """__global const real *a = x_p + x_off + (size_t)i * cols;
        __global const real *y = y_p + y_off + (size_t)i * cols;
        if (cols == 1) {
            t = (a[0] > (real)0.5) == (y[0] > (real)0.5);
        } else {
            index_t best = 0, label = 0;
            for (index_t j = 1; j < cols; j++) {
                if (a[j] > a[best]) best = j;
                if (y[j] > y[label]) label = j;
            }
            t = best == label;
        }""")}

## Class labels, one per row of the logits x (rows, cols) (a sequence's positions): y holds the
## rows' labels (as reals). Per row: logsumexp(z) - z[label]; matches: the largest is the label.
<% LABEL_CE = """__global const real *z = x_p + x_off + (size_t)i * cols;
        real top = z[0];
        for (index_t j = 1; j < cols; j++) top = fmax(top, z[j]);
        real total = 0;
        for (index_t j = 0; j < cols; j++) total += exp(z[j] - top);
        t = top + log(total) - z[(index_t)y_p[y_off + i]];""" %>
${cost_sum("label_cross_entropy_sum", "rows", LABEL_CE)}
${cost_sum("label_cross_entropy_sum", "rows", LABEL_CE, weighted=True)}
${cost_sum("label_matches", "rows", """__global const real *a = x_p + x_off + (size_t)i * cols;
        index_t best = 0;
        for (index_t j = 1; j < cols; j++) if (a[j] > a[best]) best = j;
        t = best == (index_t)y_p[y_off + i];""")}

// delta[i] *= w[i / w_per]: a gradient weighed by the samples' (or positions') weights.
${kernel("scale_rows", "real *delta, const real *w, index_t w_per, index_t n")} {
    const index_t i = get_global_id(0);
    if (i < n) delta_p[delta_off + i] *= w_p[w_off + i / w_per];
}

// delta = (softmax(a) - onehot(y)) * scale per row of (rows, cols) logits a, y the rows' labels.
// One work-item per row.
${kernel("label_softmax_difference", "const real *a, const real *y, real *delta, real scale, index_t rows, "
                                     "index_t cols")} {
    const index_t r = get_global_id(0);
    if (r >= rows) return;
    __global const real *z = a_p + a_off + (size_t)r * cols;
    __global real *d = delta_p + delta_off + (size_t)r * cols;
    const index_t label = (index_t)y_p[y_off + r];
    real top = z[0];
    for (index_t j = 1; j < cols; j++) top = fmax(top, z[j]);
    real total = 0;
    for (index_t j = 0; j < cols; j++) total += exp(z[j] - top);
    for (index_t j = 0; j < cols; j++) d[j] = (exp(z[j] - top) / total - (j == label)) * scale;
}
