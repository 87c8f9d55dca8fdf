## bias.cl: the bias of a layer, broadcast over the rows of a batch, and its gradient.
##
##   add_bias:      z[r, c] += b[c]                 for a (rows, cols) row-major z
##   bias_gradient: db[c] = sum over r of dz[r, c]  (the batch average is already in dz)
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>

// Dimension 0: vectors along a row (kernels/vectors.cl); dimension 1: the rows.
__kernel void add_bias(__global real *z_p, const index_t z_off, __global const real *b_p, const index_t b_off,
                       const index_t rows, const index_t cols) {
    const size_t row = get_global_id(1);
<%v:elementwise n="cols" inputs="${['z', 'b']}" outputs="${['z']}" base="${{'z': 'row * cols'}}">z += b;</%v:elementwise>
}

// One work-item per vector of adjacent columns: each row adds one vector load.
<% width = v.attr.vector_width(dtype) %>
__kernel void bias_gradient(__global const real *dz, const index_t dz_off, __global real *db, const index_t db_off,
                            const index_t rows, const index_t cols) {
    const index_t c = get_global_id(0) * ${width};
    if (c >= cols) return;
    if (c + ${width} <= cols) {
        real${width} sum = 0;
        for (index_t r = 0; r < rows; r++) sum += vload${width}(0, dz + dz_off + (size_t)r * cols + c);
        vstore${width}(sum, 0, db + db_off + c);
    } else {
        for (index_t j = c; j < cols; j++) {
            real sum = 0;
            for (index_t r = 0; r < rows; r++) sum += dz[dz_off + (size_t)r * cols + j];
            db[db_off + j] = sum;
        }
    }
}
