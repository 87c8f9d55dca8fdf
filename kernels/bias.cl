## bias.cl: the bias of a layer, broadcast over the rows of a batch, and its gradient.
##
##   add_bias:      z[r, c] += b[c]                 for a (rows, cols) row-major z
##   bias_gradient: db[c] = sum over r of dz[r, c]  (the batch average is already in dz)
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>

// Dimension 0: vectors along a row (kernels/vectors.cl); dimension 1: the rows.
${kernel("add_bias", "real *z, const real *b, index_t rows, index_t cols")} {
    const size_t row = get_global_id(1);
<%v:elementwise n="cols" inputs="${['z', 'b']}" outputs="${['z']}" base="${{'z': 'row * cols'}}">z += b;</%v:elementwise>
}

// One work-item per vector of adjacent columns: each row adds one vector load.
<% width = v.attr.vector_width(dtype) %>
${kernel("bias_gradient", "const real *dz, real *db, index_t rows, index_t cols")} {
    const index_t c = get_global_id(0) * ${width};
    if (c >= cols) return;
    if (c + ${width} <= cols) {
        real${width} sum = 0;
        for (index_t r = 0; r < rows; r++) sum += vload${width}(0, dz_p + dz_off + (size_t)r * cols + c);
        vstore${width}(sum, 0, db_p + db_off + c);
    } else {
        for (index_t j = c; j < cols; j++) {
            real sum = 0;
            for (index_t r = 0; r < rows; r++) sum += dz_p[dz_off + (size_t)r * cols + j];
            db_p[db_off + j] = sum;
        }
    }
}
