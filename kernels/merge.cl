## merge.cl: where the branches of a block meet (clnet.nn.blocks): a sum, a concatenation along
## the first axis of each sample, and a product with a branch broadcast over runs of elements (a
## channel's pixels: squeeze-and-excitation), with what their backward passes need.
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>
<% width = v.attr.vector_width(dtype) %>

// out = a + b, elementwise (out may be a or b).
${kernel("add", "const real *a, const real *b, real *out, index_t n")} {
<%v:elementwise n="n" inputs="${['a', 'b']}" outputs="${['out']}">out = a + b;</%v:elementwise>
}

// out = a * b, elementwise (out may be a or b).
${kernel("multiply", "const real *a, const real *b, real *out, index_t n")} {
<%v:elementwise n="n" inputs="${['a', 'b']}" outputs="${['out']}">out = a * b;</%v:elementwise>
}

// dst[r, dst_at + c] = src[r, src_at + c] for c < cols, r < rows, rows `src_stride` and
// `dst_stride` elements apart: a branch's part of each sample, into or out of the concatenation.
// Dimension 0: vectors along a row; dimension 1: the rows.
${kernel("copy_columns", "const real *src, real *dst, index_t rows, index_t cols, index_t src_stride, "
                         "index_t src_at, index_t dst_stride, index_t dst_at")} {
    const index_t c = get_global_id(0) * ${width}, r = get_global_id(1);
    if (c >= cols || r >= rows) return;
    __global const real *from = src_p + src_off + (size_t)r * src_stride + src_at + c;
    __global real *to = dst_p + dst_off + (size_t)r * dst_stride + dst_at + c;
    if (c + ${width} <= cols) vstore${width}(vload${width}(0, from), 0, to);
    else for (index_t j = 0; c + j < cols; j++) to[j] = from[j];
}

// out[r, c] = a[r, c] * g[r] for the (runs, inner) arrays a and out: g broadcast over each run.
${kernel("scale_runs", "const real *a, const real *g, real *out, index_t runs, index_t inner")} {
    const index_t c = get_global_id(0) * ${width}, r = get_global_id(1);
    if (c >= inner || r >= runs) return;
    const real scale = g_p[g_off + r];
    const size_t at = (size_t)r * inner + c;
    if (c + ${width} <= inner) {
        vstore${width}(vload${width}(0, a_p + a_off + at) * scale, 0, out_p + out_off + at);
    } else {
        for (index_t j = 0; c + j < inner; j++) out_p[out_off + at + j] = a_p[a_off + at + j] * scale;
    }
}

// out[r] = sum over c of a[r, c] * b[r, c], for (runs, inner) a and b: the gradient of the
// broadcast factor. One work-item per run, in a fixed order (the same bits every run).
${kernel("run_dots", "const real *a, const real *b, real *out, index_t runs, index_t inner")} {
    const index_t r = get_global_id(0);
    if (r >= runs) return;
    __global const real *x = a_p + a_off + (size_t)r * inner;
    __global const real *y = b_p + b_off + (size_t)r * inner;
    real${width} sums = 0;
    index_t c = 0;
    for (; c + ${width} <= inner; c += ${width}) sums += vload${width}(0, x + c) * vload${width}(0, y + c);
    real sum = ${" + ".join("sums.s%x" % q for q in range(width))};
    for (; c < inner; c++) sum += x[c] * y[c];
    out_p[out_off + r] = sum;
}
