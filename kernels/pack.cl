## pack.cl: the packing kernels of clnet's GEMM (gemm.cl reads what they write).
##
## pack_b and pack_b_t cut op(B) into panels of TILE_COLS columns, each panel stored k by k, so
## that a work-item of gemm_tile streams its panel contiguously; the last panel is padded with
## zeros. pack_a lays out a transposed A the same way, in row tiles of TILE_ROWS.
## Params: dtype; rows; width (kernels/tiles.cl).
<%include file="tiles.cl"/>
<% vec = ("float%d" if dtype == "float32" else "double%d") % width %>
// packed[((j / TILE_COLS) * k_count + k) * TILE_COLS + j % TILE_COLS] = op(B)[k, j] = B[k, j]
// (row stride ldb), 0 past n. One work-item per (panel, k): two vectors in, two aligned out.
${kernel("pack_b", "const real *b, index_t ldb, index_t k_count, index_t n, real *packed")} {
    const index_t panel = get_global_id(0), k = get_global_id(1);
    const index_t j0 = panel * TILE_COLS;
    if (j0 >= n || k >= k_count) return;
    __global const real *from = b_p + b_off + (size_t)k * ldb + j0;
    __global ${vec} *to = (__global ${vec} *)(packed_p + packed_off + ((size_t)panel * k_count + k) * TILE_COLS);
    if (j0 + TILE_COLS <= n) {
        to[0] = *(__global const unaligned_vec *)from;
        to[1] = *(__global const unaligned_vec *)(from + ${width});
    } else {
        to[0] = (${vec})(${", ".join("j0 + %d < n ? from[%d] : 0" % (q, q) for q in range(width))});
        to[1] = (${vec})(${", ".join("j0 + %d < n ? from[%d] : 0" % (q + width, q + width) for q in range(width))});
    }
}

// The same packing for op(B) = B.T (B of shape (n, k) with row stride ldb), as width x width
// transposes in registers: one work-item per (panel, block of ${width} steps over k) reads
// ${width}-element row pieces of B and writes whole vectors (a scalar gather per element, as
// pack_b does, took 3.6 ns per element on 2048 x 2048).
//
// B may also be blocks of `block` steps over k, `block_stride` elements apart (a convolution's
// dC/dz, (samples, n, pixels): B[k, j] at (k / block) * block_stride + j * ldb + k % block); the
// plain matrix is one block of k_count (block_stride unused).
#define B_AT(j, k) ((size_t)((k) / block) * block_stride + (size_t)(j) * ldb + (k) % block)
${kernel("pack_b_t", "const real *b, index_t ldb, index_t k_count, index_t n, real *packed, index_t block, "
                     "index_t block_stride")} {
    const index_t panel = get_global_id(0), k0 = get_global_id(1) * ${width};
    const index_t j0 = panel * TILE_COLS;
    if (j0 >= n || k0 >= k_count) return;
    // a whole vector of steps inside one block: read as a vector, else element by element
    const bool whole = k0 + ${width} <= k_count && k0 % block + ${width} <= block;
    __global ${vec} *to = (__global ${vec} *)(packed_p + packed_off + ((size_t)panel * k_count + k0) * TILE_COLS);
% for h in range(2):
    {
    % for q in range(width):
        ${vec} r${q} = 0;
        {
            const index_t j = j0 + ${h * width + q};
            __global const real *b = b_p + b_off;
            if (j < n) {
                if (whole) r${q} = *(__global const unaligned_vec *)(b + B_AT(j, k0));
                else r${q} = (${vec})(${', '.join('k0 + %d < k_count ? b[B_AT(j, k0 + %d)] : 0' % (t, t) for t in range(width))});
            }
        }
    % endfor
    % for t in range(width):
        if (${"true" if t == 0 else "whole || k0 + %d < k_count" % t}) to[${t * 2 + h}] = (${vec})(${", ".join("r%d.s%x" % (q, t) for q in range(width))});
    % endfor
    }
% endfor
}

// packed_a[((i / TILE_ROWS) * k_count + k) * TILE_ROWS + i % TILE_ROWS] = op(A)[i, k], rows past
// m repeating the last row. op(A)[i, k] is A[a_off + i * a_i + k * a_k].
${kernel("pack_a", "const real *a, index_t a_i, index_t a_k, index_t m, index_t k_count, real *packed")} {
    const index_t tile = get_global_id(0), k = get_global_id(1);
    const index_t i0 = tile * TILE_ROWS;
    if (i0 >= m || k >= k_count) return;
    __global const real *from = a_p + a_off + (size_t)k * a_k;
    __global real *to = packed_p + packed_off + ((size_t)tile * k_count + k) * TILE_ROWS;
% for r in range(rows):
    to[${r}] = from[(size_t)min(i0 + ${r}, m - 1) * a_i];
% endfor
}

