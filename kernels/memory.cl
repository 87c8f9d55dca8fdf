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
