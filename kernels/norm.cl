## norm.cl: batch and layer normalization (clnet/ops/norm.py).
##
## Statistics are per segment of an array seen as (outer, segments, inner): element (o, s, i) at
## (o * segments + s) * inner + i. Batch normalization of (N, C, H, W) is (N, C, H * W), of
## (N, C) features (N, C, 1); layer normalization's rows are (1, rows, D), and its parameters'
## gradients sum over (rows, D, 1).
##
##   row_moments, combine_moments: mean[s], var[s] (biased) over the segment: each row of inner
##                   elements its mean and squared deviations (two passes over a row in cache:
##                   exact where one pass would cancel), the rows then combined per segment
##   running_update: running = (1 - momentum) running + momentum batch (var unbiased), PyTorch's
##   row_sums2, combine_sums: s1[s] = sum dy w, s2[s] = sum dy w xhat over the segment, xhat =
##                   (x - mean) * invstd with the statistics of the segment or of the outer index,
##                   w = 1 or scale[i] (weighted): the backward pass's reductions, rows then segments
##   column_sums2:   layer norm's parameter gradients, per column of its rows
## The elementwise kernels see the array as rows of `cols` contiguous elements, with statistics
## and affine parameters per row (`row % segments`) or per column (params stats_at, affine_at):
##   norm_forward:   y = (x - mean) * invstd * scale + shift
##   norm_backward:  dx = pre * invstd / count * (count * dy * w - s1 - xhat * s2), with
##                   pre = scale and w = 1 (batch norm), or pre = 1 and w = scale (layer norm)
##
## Batch norm's activation (param activation, "linear": none) is applied in norm_forward, a =
## f(y), and its derivative in the backward kernels, g = dy * f'(a or z): a read from the layer's
## output `out`, z = xhat * scale + shift made again from x (param affine: with scale and shift).
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>
<%namespace name="act" file="activations.cl"/>
<%
    stats_at, affine_at = context.get("stats_at", "row"), context.get("affine_at", None)
    stats_by, weighted = context.get("stats_by", "segment"), context.get("weighted", False)
    activation, affine = context.get("activation") or "linear", context.get("affine", False)
    width_v = v.attr.vector_width(dtype)
    vec = "real%d" % width_v
    fused = activation != "linear"
    slope_reads = act.attr.ACTIVATIONS[activation][2]
    extra = act.attr.signature_extra(activation)
%>
#define ZERO ((${vec})(0))
#define ONE ((${vec})(1))
## g *= f'(a or z) for a `type` (the vector type or real: a scalar goes through lane 0 of a vector,
## since the formulas are written for vectors); value: a's or z's expression of that type.
<%def name="times_slope(g, type, value)">
    {
        const ${vec} ${slope_reads} = (${vec})(${value});
        const ${vec} slope_ = ${act.attr.ACTIVATIONS[activation][1]};
        ${g} *= slope_${"" if type == vec else ".s0"};
    }
</%def>
## One work-item per row (o, s) of `inner` elements, in vectors (kernels/vectors.cl's width), then the
## rest one by one. body(load, type, acc): the loop's statement, with load(name, within_row) the
## element at i of array `name` (within_row: of the row, else of the array itself), type the
## element type and acc(name) the accumulator of `name`.
<%def name="row_loop(body, names)">
    % for name in names:
    ${vec} ${name}_v = 0;
    % endfor
    index_t i = 0;
    for (; i + ${width_v} <= inner; i += ${width_v}) {
        ${body(lambda a, row=True: "vload%d(0, %s_p + %s_off + %si)" % (width_v, a, a, "base + " if row else ""), vec, lambda n: n + "_v")}
    }
    % for name in names:
    real ${name} = ${" + ".join("%s_v.s%x" % (name, q) for q in range(width_v))};
    % endfor
    for (; i < inner; i++) {
        ${body(lambda a, row=True: "%s_p[%s_off + %si]" % (a, a, "base + " if row else ""), "real", lambda n: n)}
    }
</%def>

// Per row: its mean and the sum of its squared deviations, two passes over the row (in cache).
<%def name="sum_body(load, type, acc)">${acc("sum")} += ${load("x")};</%def>
<%def name="m2_body(load, type, acc)">{ const ${type} d = ${load("x")} - mu; ${acc("m2")} += d * d; }</%def>
${kernel("row_moments", "const real *x, real *row_mean, real *row_m2, index_t rows, index_t inner")} {
    const size_t row = get_global_id(0);
    if (row >= rows) return;
    const size_t base = row * inner;
    real mu;
    {
${row_loop(sum_body, ["sum"])}
    mu = sum / inner;
    }
${row_loop(m2_body, ["m2"])}
    row_mean_p[row_mean_off + row] = mu;
    row_m2_p[row_m2_off + row] = m2;
}

// Per segment s: mean and (biased) variance from its outer rows' means and squared deviations,
// combined exactly (Chan et al.: M2 = sum m2 + inner * sum (row mean - mean)^2).
${kernel("combine_moments", "const real *row_mean, const real *row_m2, real *mean, real *var, index_t outer, "
                            "index_t segments, index_t inner")} {
    const index_t s = get_global_id(0);
    if (s >= segments) return;
    real sum = 0;
    for (index_t o = 0; o < outer; o++) sum += row_mean_p[row_mean_off + (size_t)o * segments + s];
    const real mu = sum / outer;
    real m2 = 0, spread = 0;
    for (index_t o = 0; o < outer; o++) {
        const size_t at = (size_t)o * segments + s;
        const real d = row_mean_p[row_mean_off + at] - mu;
        m2 += row_m2_p[row_m2_off + at];
        spread += d * d;
    }
    mean_p[mean_off + s] = mu;
    var_p[var_off + s] = (m2 + inner * spread) / ((real)outer * inner);
}

${kernel("running_update", "const real *mean, const real *var, real *running_mean, real *running_var, "
                           "real momentum, real unbias, index_t segments")} {
    const index_t s = get_global_id(0);
    if (s >= segments) return;
    running_mean_p[running_mean_off + s] = momentum * mean_p[mean_off + s]
                                           + (1 - momentum) * running_mean_p[running_mean_off + s];
    running_var_p[running_var_off + s] = momentum * var_p[var_off + s] * unbias
                                         + (1 - momentum) * running_var_p[running_var_off + s];
}

// Per row (o, s): a = sum of dy * w and b = sum of dy * w * xhat, xhat = (x - mean) * invstd with
// the statistics of the segment s, or of the outer index o (stats_by); w = scale[i] or 1 (weighted).
<%def name="sums_body(load, type, acc)">
        {
            ${type} g = ${load("dy")}${(" * " + load("scale", False)) if weighted else ""};
            const ${type} xhat = (${load("x")} - mu) * invstd;
% if fused:
            ${times_slope("g", type, load("out") if slope_reads == "a" else "xhat * gamma + beta")}
% endif
            ${acc("a")} += g;
            ${acc("b")} += g * xhat;
        }
</%def>
${kernel("row_sums2", "const real *dy, const real *x, const real *mean, const real *var, const real *scale, "
                      "real eps, real *row_a, real *row_b, index_t rows, index_t segments, index_t inner, "
                      "const real *out, const real *shift" + extra)} {
    const size_t row = get_global_id(0);
    if (row >= rows) return;
    const size_t base = row * inner;
    const index_t t = ${"row % segments" if stats_by == "segment" else "row / segments"};
    const real mu = mean_p[mean_off + t], invstd = 1 / sqrt(var_p[var_off + t] + eps);
    // z = xhat * gamma + beta, the activation's input (batch norm's affine parameters of segment t)
    const real gamma = ${"scale_p[scale_off + t]" if affine else "1"}, beta = ${"shift_p[shift_off + t]" if affine else "0"};
${row_loop(sums_body, ["a", "b"])}
    row_a_p[row_a_off + row] = a;
    row_b_p[row_b_off + row] = b;
}

// Layer norm's parameter gradients: per column c of (rows, cols) dy and x, with each row's
// statistics, s1[c] = sum over rows of dy and s2[c] = sum of dy * xhat. One work-item per vector
// of columns walks the rows in order (contiguous loads; the same bits every run).
${kernel("column_sums2", "const real *dy, const real *x, const real *mean, const real *var, real eps, real *s1, "
                         "real *s2, index_t rows, index_t cols")} {
    const index_t c = get_global_id(0) * ${width_v};
    if (c >= cols) return;
    if (c + ${width_v} <= cols) {
        ${vec} a = 0, b = 0;
        for (index_t r = 0; r < rows; r++) {
            const real mu = mean_p[mean_off + r], invstd = 1 / sqrt(var_p[var_off + r] + eps);
            const size_t at = (size_t)r * cols + c;
            const ${vec} g = vload${width_v}(0, dy_p + dy_off + at);
            a += g;
            b += g * ((vload${width_v}(0, x_p + x_off + at) - mu) * invstd);
        }
        vstore${width_v}(a, 0, s1_p + s1_off + c);
        vstore${width_v}(b, 0, s2_p + s2_off + c);
    } else {
        for (index_t k = c; k < cols; k++) {
            real a = 0, b = 0;
            for (index_t r = 0; r < rows; r++) {
                const real mu = mean_p[mean_off + r], invstd = 1 / sqrt(var_p[var_off + r] + eps);
                const real g = dy_p[dy_off + (size_t)r * cols + k];
                a += g;
                b += g * ((x_p[x_off + (size_t)r * cols + k] - mu) * invstd);
            }
            s1_p[s1_off + k] = a;
            s2_p[s2_off + k] = b;
        }
    }
}

// Per segment s: s1 = the sum of its rows' a, s2 of their b.
${kernel("combine_sums", "const real *row_a, const real *row_b, real *s1, real *s2, index_t outer, index_t segments")} {
    const index_t s = get_global_id(0);
    if (s >= segments) return;
    real a = 0, b = 0;
    for (index_t o = 0; o < outer; o++) {
        a += row_a_p[row_a_off + (size_t)o * segments + s];
        b += row_b_p[row_b_off + (size_t)o * segments + s];
    }
    s1_p[s1_off + s] = a;
    s2_p[s2_off + s] = b;
}

<%
    def per(name, where):
        """A per-row scalar or a per-column vector of the array `name`."""
        return name if where == "col" else None
    row_values = [n for n, w in (("mean", stats_at), ("var", stats_at)) if w == "row"]
    if affine_at == "row":
        row_values += ["scale", "shift"]
    col_inputs = [n for n, w in (("mean", stats_at), ("var", stats_at)) if w == "col"]
    if affine_at == "col":
        col_inputs += ["scale", "shift"]
    col_base = {n: "0" for n in ["mean", "var", "scale", "shift", "s1", "s2"]}
%>
<%def name="row_scalars(names)">
    % for name in names:
    const real ${name} = ${name}_p[${name}_off + row % segments];
    % endfor
</%def>
// Dimension 1: rows; dimension 0: vectors along a row.
${kernel("norm_forward", "const real *x, const real *mean, const real *var, const real *scale, const real *shift, "
                      "real eps, real *y, index_t segments, index_t cols" + extra)} {
    const index_t row = get_global_id(1);
${row_scalars(row_values)}
<%v:elementwise n="cols" inputs="${['x'] + col_inputs}" outputs="${['y']}" base="${dict(col_base, x='(size_t)row * cols', y='(size_t)row * cols')}">
    y = (x - mean) / sqrt(var + eps);
% if affine_at is not None:
    y = y * scale + shift;
% endif
% if fused:
    {
        const ${vec} z = y;
        y = ${act.attr.ACTIVATIONS[activation][0]};
    }
% endif
</%v:elementwise>
}

<%
    # z = xhat * scale + shift is made again where the activation's derivative reads z
    z_shift = ["shift"] if fused and slope_reads == "z" and affine_at is not None else []
    back_row = [n for n, w in (("mean", stats_at), ("var", stats_at), ("s1", stats_at), ("s2", stats_at))
                if w == "row"] + (["scale"] + z_shift if affine_at == "row" else [])
    back_col = [n for n, w in (("mean", stats_at), ("var", stats_at), ("s1", stats_at), ("s2", stats_at))
                if w == "col"] + (["scale"] + z_shift if affine_at == "col" else [])
    out_input = ["out"] if fused and slope_reads == "a" else []
%>
${kernel("norm_backward", "const real *dy, const real *x, const real *mean, const real *var, const real *scale, "
                               "const real *s1, const real *s2, real eps, real count, real *dx, index_t segments, "
                               "index_t cols, const real *out, const real *shift" + extra)} {
    const index_t row = get_global_id(1);
${row_scalars(back_row)}
<%v:elementwise n="cols" inputs="${['dy', 'x'] + out_input + back_col}" outputs="${['dx']}" base="${dict(col_base, dy='(size_t)row * cols', x='(size_t)row * cols', dx='(size_t)row * cols', out='(size_t)row * cols')}">
    const ${vec} invstd = 1 / sqrt(var + eps);
    const ${vec} xhat = (x - mean) * invstd;
    ${vec} g = dy;
% if fused:
    ${times_slope("g", vec, "out" if slope_reads == "a" else ("xhat * scale + shift" if affine_at else "xhat"))}
% endif
% if weighted and affine_at == "col":
    dx = invstd / count * (count * g * scale - s1 - xhat * s2);
% elif affine_at is not None:
    dx = scale * invstd / count * (count * g - s1 - xhat * s2);
% else:
    dx = invstd / count * (count * g - s1 - xhat * s2);
% endif
</%v:elementwise>
}
