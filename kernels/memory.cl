## memory.cl: the plainest kernels, a store and a copy (the memory-bandwidth limit that the
## benchmarks compare the other kernels with), and gathering the rows of a mini-batch.
## Every array argument is its buffer plus an element offset (pyopencl views keep theirs).
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>

__kernel void fill(__global real *a_p, const index_t a_off, const real value, const index_t n) {
<%v:elementwise n="n" inputs="${[]}" outputs="${['a']}">a = value;</%v:elementwise>
}

__kernel void copy(__global const real *src_p, const index_t src_off,
                   __global real *dst_p, const index_t dst_off, const index_t n) {
<%v:elementwise n="n" inputs="${['src']}" outputs="${['dst']}">dst = src;</%v:elementwise>
}

// dst row r = src row indices[first + r], for (rows, cols) dst and (any, cols) src: a mini-batch.
__kernel void gather_rows(__global const real *src, const index_t src_off, __global const uint *indices,
                          const index_t first, __global real *dst, const index_t dst_off,
                          const index_t rows, const index_t cols) {
    const index_t i = get_global_id(0);
    if (i >= rows * cols) return;
    const index_t r = i / cols, c = i % cols;
    dst[dst_off + i] = src[src_off + (size_t)indices[first + r] * cols + c];
}
