## bias.cl: the bias of a layer, broadcast over the rows of a batch, and its gradient.
##
##   add_bias:      z[r, c] += b[c]                 for a (rows, cols) row-major z
##   bias_gradient: db[c] = sum over r of dz[r, c]  (the batch average is already in dz)
##   column_sums:   the same, shaped for GPUs: out[chunk, c] = the sum of chunk's rows of x[:, c]
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

// GPU-shaped column sums: a work-group of LC x LR work-items takes LC adjacent columns (its
// neighbours read neighbouring words) of one chunk of rows, LR work-items walking the chunk's
// rows a stride of LR apart, then a local tree over those LR partial sums. Many chunks keep
// every compute unit busy for a narrow layer (10 columns: one work-item per column would use
// 10); their sums are added by the same kernel run once more on the (chunks, cols) partials.
// LR is a power of two (the launch asks for one; Kernel.work_group halves it).
${kernel("column_sums", "const real *x, real *out, index_t rows, index_t cols, index_t chunk_rows, "
                        "local real *scratch")} {
    const index_t lc = get_local_id(0), lr = get_local_id(1);
    const index_t size_c = get_local_size(0), size_r = get_local_size(1);
    const index_t col = get_group_id(0) * size_c + lc, chunk = get_group_id(1);
    const index_t first = chunk * chunk_rows, last = min(first + chunk_rows, rows);
    real sum = 0;
    if (col < cols)
        for (index_t r = first + lr; r < last; r += size_r) sum += x_p[x_off + (size_t)r * cols + col];
    scratch[lr * size_c + lc] = sum;
    for (index_t stride = size_r / 2; stride > 0; stride /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lr < stride) scratch[lr * size_c + lc] += scratch[(lr + stride) * size_c + lc];
    }
    if (lr == 0 && col < cols) out_p[out_off + (size_t)chunk * cols + col] = scratch[lc];
}
