## memory.cl: the plainest kernels, a store and a copy. They are the memory-bandwidth limit
## that the benchmarks compare the other kernels with, and fill/copy device arrays.
## Every array argument is its buffer plus an element offset (pyopencl views keep theirs).
<%include file="common.cl"/>

__kernel void fill(__global real *a, const index_t a_off, const real value, const index_t n) {
    const index_t i = get_global_id(0);
    if (i < n) a[a_off + i] = value;
}

__kernel void copy(__global const real *src, const index_t src_off,
                   __global real *dst, const index_t dst_off, const index_t n) {
    const index_t i = get_global_id(0);
    if (i < n) dst[dst_off + i] = src[src_off + i];
}
