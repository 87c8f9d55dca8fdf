## split_k.cl: the second pass of a product whose k was cut into parts (gemm.cl's split_k): the
## parts, each an (m, n) product of its own stored one after the other, summed in part order, so
## that a product has the same bits on every run and whatever order the work-groups ran in.
## Params: dtype.
<%include file="common.cl"/>

// c = alpha * (parts[0] + parts[1] + ... + parts[count - 1]) + beta * c (c not read when beta is
// 0: it may hold NaN). One work-item per element of c, consecutive items on consecutive columns.
${kernel("sum_parts", "const real *parts, real *c, index_t m, index_t n, index_t ldc, index_t count, "
                      "real alpha, real beta")} {
    const size_t e = get_global_id(0), size = (size_t)m * n;
    if (e >= size) return;
    const index_t i = e / n, j = e % n;
    __global const real *from = parts_p + parts_off + e;
    real sum = from[0];
    for (index_t p = 1; p < count; p++) sum += from[p * size];
    __global real *to = c_p + c_off + (size_t)i * ldc + j;
    *to = beta != 0 ? alpha * sum + beta * *to : alpha * sum;
}
