## norm.cl: batch and layer normalization (clnet/ops/norm.py).
##
## Statistics are per segment of an array seen as (outer, segments, inner): element (o, s, i) at
## (o * segments + s) * inner + i. Batch normalization of (N, C, H, W) is (N, C, H * W), of
## (N, C) features (N, C, 1); layer normalization's rows are (1, rows, D), and its parameters'
## gradients sum over (rows, D, 1).
##
##   moments:        mean[s], var[s] (biased) over the segment: one work-group per segment, the
##                   mean first, then the squared deviations (exact where one pass would cancel)
##   running_update: running = (1 - momentum) running + momentum batch (var unbiased), PyTorch's
##   sums:           s1[s] = sum dy w, s2[s] = sum dy w xhat over the segment, xhat = (x - mean) *
##                   invstd with the statistics of the segment or of the outer index, w = 1 or
##                   scale[i] (weighted): the backward pass's reductions
## The elementwise kernels see the array as rows of `cols` contiguous elements, with statistics
## and affine parameters per row (`row % segments`) or per column (params stats_at, affine_at):
##   norm_forward:   y = (x - mean) * invstd * scale + shift
##   norm_backward:  dx = pre * invstd / count * (count * dy * w - s1 - xhat * s2), with
##                   pre = scale and w = 1 (batch norm), or pre = 1 and w = scale (layer norm)
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>
<%
    stats_at, affine_at = context.get("stats_at", "row"), context.get("affine_at", None)
    stats_by, weighted = context.get("stats_by", "segment"), context.get("weighted", False)
    width_v = v.attr.vector_width(dtype)
    vec = "real%d" % width_v
%>
<%def name="reduce(names)">
    % for name in names:
    ${name}_partial[lid] = ${name};
    % endfor
    for (index_t stride = size / 2; stride > 0; stride /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < stride) {
    % for name in names:
            ${name}_partial[lid] += ${name}_partial[lid + stride];
    % endfor
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
</%def>
## Every element of segment s, as `at`, and its outer index o and inner index i: rows of inner
## elements when they are at least a work-group wide, else one flat walk (a division each).
<%def name="each_element(body)">
    if (inner >= size) {
        for (index_t o = 0; o < outer; o++)
            for (index_t i = lid; i < inner; i += size) {
                const size_t at = ((size_t)o * segments + s) * inner + i;
                ${body}
            }
    } else {
        for (index_t k = lid; k < outer * inner; k += size) {
            const index_t o = k / inner, i = k % inner;
            const size_t at = ((size_t)o * segments + s) * inner + i;
            ${body}
        }
    }
</%def>

${kernel("moments", "const real *x, real *mean, real *var, index_t outer, index_t segments, index_t inner, "
                    "local real *sum_partial")} {
    const index_t s = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    __global const real *from = x_p + x_off;
    const real count = (real)outer * inner;
    real sum = 0;
${each_element("sum += from[at];")}
${reduce(["sum"])}
    const real mu = sum_partial[0] / count;
    barrier(CLK_LOCAL_MEM_FENCE);
    sum = 0;
${each_element("const real d = from[at] - mu; sum += d * d;")}
${reduce(["sum"])}
    if (lid == 0) {
        mean_p[mean_off + s] = mu;
        var_p[var_off + s] = sum_partial[0] / count;
    }
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

${kernel("sums", "const real *dy, const real *x, const real *mean, const real *var, const real *scale, real eps, "
                 "real *s1, real *s2, index_t outer, index_t segments, index_t inner, local real *a_partial, "
                 "local real *b_partial")} {
    const index_t s = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    real a = 0, b = 0;
<%
    t = "s" if stats_by == "segment" else "o"
    body = ("const real invstd = 1 / sqrt(var_p[var_off + %s] + eps); "
            "const real xhat = (x_p[x_off + at] - mean_p[mean_off + %s]) * invstd; "
            "const real g = dy_p[dy_off + at]%s; a += g; b += g * xhat;"
            % (t, t, " * scale_p[scale_off + i]" if weighted else ""))
%>
${each_element(body)}
${reduce(["a", "b"])}
    if (lid == 0) {
        s1_p[s1_off + s] = a_partial[0];
        s2_p[s2_off + s] = b_partial[0];
    }
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
                      "real eps, real *y, index_t segments, index_t cols")} {
    const index_t row = get_global_id(1);
${row_scalars(row_values)}
<%v:elementwise n="cols" inputs="${['x'] + col_inputs}" outputs="${['y']}" base="${dict(col_base, x='(size_t)row * cols', y='(size_t)row * cols')}">
    y = (x - mean) / sqrt(var + eps);
% if affine_at is not None:
    y = y * scale + shift;
% endif
</%v:elementwise>
}

<%
    back_row = [n for n, w in (("mean", stats_at), ("var", stats_at), ("s1", stats_at), ("s2", stats_at))
                if w == "row"] + (["scale"] if affine_at == "row" else [])
    back_col = [n for n, w in (("mean", stats_at), ("var", stats_at), ("s1", stats_at), ("s2", stats_at))
                if w == "col"] + (["scale"] if affine_at == "col" else [])
%>
${kernel("norm_backward", "const real *dy, const real *x, const real *mean, const real *var, const real *scale, "
                               "const real *s1, const real *s2, real eps, real count, real *dx, index_t segments, "
                               "index_t cols")} {
    const index_t row = get_global_id(1);
${row_scalars(back_row)}
<%v:elementwise n="cols" inputs="${['dy', 'x'] + back_col}" outputs="${['dx']}" base="${dict(col_base, dy='(size_t)row * cols', x='(size_t)row * cols', dx='(size_t)row * cols')}">
    const ${vec} invstd = 1 / sqrt(var + eps);
    const ${vec} xhat = (x - mean) * invstd;
% if weighted and affine_at == "col":
    dx = invstd / count * (count * dy * scale - s1 - xhat * s2);
% elif affine_at is not None:
    dx = scale * invstd / count * (count * dy - s1 - xhat * s2);
% else:
    dx = invstd / count * (count * dy - s1 - xhat * s2);
% endif
</%v:elementwise>
}
