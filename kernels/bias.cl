## bias.cl: the bias of a layer, broadcast over the rows of a batch, and its gradient.
##
##   add_bias:      z[r, c] += b[c]                 for a (rows, cols) row-major z
##   bias_gradient: db[c] = sum over r of dz[r, c]  (the batch average is already in dz)
<%include file="common.cl"/>

__kernel void add_bias(__global real *z, const index_t z_off, __global const real *b, const index_t b_off,
                       const index_t rows, const index_t cols) {
    const index_t i = get_global_id(0);
    if (i >= rows * cols) return;
    z[z_off + i] += b[b_off + i % cols];
}

// One work-item per column; neighbouring items read neighbouring memory in each row.
__kernel void bias_gradient(__global const real *dz, const index_t dz_off, __global real *db, const index_t db_off,
                            const index_t rows, const index_t cols) {
    const index_t c = get_global_id(0);
    if (c >= cols) return;
    real sum = 0;
    for (index_t r = 0; r < rows; r++) sum += dz[dz_off + r * cols + c];
    db[db_off + c] = sum;
}
