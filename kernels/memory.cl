## memory.cl: the plainest kernels, a store and a copy (the memory-bandwidth limit that the
## benchmarks compare the other kernels with), and gathering the rows of a mini-batch.
## Every array argument is its buffer plus an element offset (pyopencl views keep theirs):
## `kernel(...)` (clnet/runtime/kernels.py) declares x as x_p and x_off.
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>

${kernel("fill", "real *a, real value, index_t n")} {
<%v:elementwise n="n" inputs="${[]}" outputs="${['a']}">a = value;</%v:elementwise>
}

${kernel("copy", "const real *src, real *dst, index_t n")} {
<%v:elementwise n="n" inputs="${['src']}" outputs="${['dst']}">dst = src;</%v:elementwise>
}

// dst row r = src row indices[first + r], for (rows, cols) dst and (any, cols) src: a mini-batch.
${kernel("gather_rows", "const real *src, const uint *indices, index_t first, real *dst, index_t rows, "
                       "index_t cols")} {
    const index_t i = get_global_id(0);
    if (i >= rows * cols) return;
    const index_t r = i / cols, c = i % cols;
    dst_p[dst_off + i] = src_p[src_off + (size_t)indices_p[indices_off + first + r] * cols + c];
}

// A mini-batch of inputs and targets in one launch: x_batch row r = x row indices[first + r], and
// the same for y. Dimension 1: the rows; dimension 0: the vectors of a row of x, then of y.
<% width = v.attr.vector_width(dtype) %>
<%def name="copy_vector(src, dst, at, cols)">
            if (${at} + ${width} <= ${cols}) vstore${width}(vload${width}(0, ${src} + ${at}), 0, ${dst} + ${at});
            else for (index_t c = ${at}; c < ${cols}; c++) ${dst}[c] = ${src}[c];
</%def>
${kernel("gather_batch", "const real *x, const real *y, const uint *indices, index_t first, real *x_batch, "
                         "real *y_batch, index_t x_cols, index_t y_cols")} {
    const index_t r = get_global_id(1), x_vectors = (x_cols + ${width - 1}) / ${width};
    const size_t row = indices_p[indices_off + first + r];
    const index_t at = get_global_id(0) * ${width};
    if (at < x_vectors * ${width}) {
${copy_vector("(x_p + x_off + row * x_cols)", "(x_batch_p + x_batch_off + (size_t)r * x_cols)", "at", "x_cols")}
    } else if (at - x_vectors * ${width} < y_cols) {
        const index_t at_y = at - x_vectors * ${width};
${copy_vector("(y_p + y_off + row * y_cols)", "(y_batch_p + y_batch_off + (size_t)r * y_cols)", "at_y", "y_cols")}
    }
}

// out[g] = the sum of a term of x over work-group g's share of the n elements: with x * 0 (finite_check),
// 0 when each is finite, NaN otherwise (inf * 0 and NaN * 0 are NaN); with x * x (square_sums),
// a part of the squared norm. Each work-item sums a contiguous run of vectors (strided scalars,
// one chain of adds, ran at 5 ns an element), and several groups share the array, so that every
// core reads its part.
<%def name="group_sums(name, term)">
${kernel(name, "const real *x, real *out, index_t n, local real *partial")} {
    const index_t lid = get_local_id(0), size = get_local_size(0);
    __global const real *from = x_p + x_off;
    const size_t vectors = n / ${width}, items = get_global_size(0), item = get_global_id(0);
    const size_t per_item = (vectors + items - 1) / items, first = item * per_item;
    const size_t last = min(first + per_item, vectors);
    real${width} sums = 0, x;
    for (size_t v = first; v < last; v++) {
        x = vload${width}(v, from);
        sums += ${term};
    }
    real sum = ${" + ".join("sums.s%x" % q for q in range(width))};
    if (item == 0)
        for (size_t i = vectors * ${width}; i < n; i++) {
            const real x = from[i];
            sum += ${term};
        }
    partial[lid] = sum;
    for (index_t stride = size / 2; stride > 0; stride /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < stride) partial[lid] += partial[lid + stride];
    }
    if (lid == 0) out_p[out_off + get_group_id(0)] = partial[0];
}
</%def>
${group_sums("finite_check", "x * 0")}
${group_sums("square_sums", "x * x")}
