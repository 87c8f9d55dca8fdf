## gemm.cl: clnet's own GEMM for CPU devices, C = alpha * op(A) @ op(B) + beta * C.
##
## Register-blocked for PoCL, which runs one work-item's code as written (it does not
## vectorize across work-items here): each work-item computes a ${rows}-row by 2 x ${width}-column
## tile of C in ${2 * rows} vector accumulators, the shape of BLIS's Zen microkernels (6 x 16
## floats in 12 AVX2 registers). Every step over k loads two vectors of B and ${rows} scalars of A
## and does ${2 * rows} multiply-adds written as a * b + c: PoCL contracts those into FMAs,
## while the fma() and mad() builtins ran 9x slower there.
##
## B is read `packed` by pack_b: op(B) cut into panels of TILE_COLS columns, each panel stored
## k by k, so a work-item streams its panel contiguously (op(B) read in place would cost a new
## page per step over k); the last panel is padded with zeros. A is read in place, TILE_ROWS
## row streams, when it is not transposed; a transposed A would cost a new page per step over
## k, so pack_a first lays it out the same way as B (1024^3: 150 -> 185 GFLOP/s here, while
## packing an A that is not transposed lost 10%). Rows past m repeat the last row; their
## results are dropped.
##
## Params: dtype; rows (tile rows); width (vector width: 8 floats or 4 doubles = 256 bits);
## packed_a (True: A comes packed by pack_a; False: A is read in place, not transposed).
<%include file="common.cl"/>
<%
    vec = ("float%d" if dtype == "float32" else "double%d") % width
    tile_cols = 2 * width
%>
#define TILE_ROWS ${rows}
#define TILE_COLS ${tile_cols}

// packed[((j / TILE_COLS) * k_count + k) * TILE_COLS + j % TILE_COLS] = op(B)[k, j], 0 past n.
// op(B)[k, j] is B[b_off + k * b_k + j * b_j]: (b_k, b_j) = (ldb, 1) for B, (1, ldb) for B.T.
// One work-item per (panel, k): TILE_COLS values, written as two aligned vectors.
${kernel("pack_b", "const real *b, index_t b_k, index_t b_j, index_t k_count, index_t n, real *packed")} {
    const index_t panel = get_global_id(0), k = get_global_id(1);
    const index_t j0 = panel * TILE_COLS;
    if (j0 >= n || k >= k_count) return;
    __global const real *from = b_p + b_off + (size_t)k * b_k + (size_t)j0 * b_j;
    ${vec} v0, v1;
    if (j0 + TILE_COLS <= n) {
% for q in range(tile_cols):
        v${q // width}.s${"%x" % (q % width)} = from[${q} * b_j];
% endfor
    } else {
% for q in range(tile_cols):
        v${q // width}.s${"%x" % (q % width)} = j0 + ${q} < n ? from[${q} * b_j] : (real)0;
% endfor
    }
    __global ${vec} *to = (__global ${vec} *)(packed_p + packed_off + ((size_t)panel * k_count + k) * TILE_COLS);
    to[0] = v0;
    to[1] = v1;
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

// One tile of C per work-item: dimension 0 walks tile rows, dimension 1 tile columns, so the
// work-items of a work-group share one panel of B (K x TILE_COLS) while it is in cache.
${kernel("gemm_tile", "index_t m, index_t n, index_t k_count, const real *a, index_t lda, const real *packed, "
                      "real *c, index_t ldc, real alpha, real beta")} {
    const index_t i0 = get_global_id(0) * TILE_ROWS, j0 = get_global_id(1) * TILE_COLS;
    if (i0 >= m || j0 >= n) return;
% if packed_a:
    __global const real *ak = a_p + a_off + (size_t)i0 * k_count;  // row tile i0 / TILE_ROWS of packed A
% else:
    % for r in range(rows):
    __global const real *a${r} = a_p + a_off + (size_t)min(i0 + ${r}, m - 1) * lda;
    % endfor
% endif
% for r in range(rows):
    ${vec} acc${r}_0 = 0, acc${r}_1 = 0;
% endfor
    __global const real *bk = packed_p + packed_off + (size_t)j0 * k_count;  // panel j0 / TILE_COLS, vector-aligned
    for (index_t k = 0; k < k_count; k++, bk += TILE_COLS${", ak += TILE_ROWS" if packed_a else ""}) {
        // a vector pointer, not vload: PoCL calls vload as a function, spilling every accumulator
        const ${vec} b0 = ((__global const ${vec} *)bk)[0], b1 = ((__global const ${vec} *)bk)[1];
% for r in range(rows):
        const real x${r} = ${"ak[%d]" % r if packed_a else "a%d[k]" % r};
        acc${r}_0 = x${r} * b0 + acc${r}_0;
        acc${r}_1 = x${r} * b1 + acc${r}_1;
% endfor
    }
    // C = alpha * acc + beta * C; C is not read when beta is 0, so it may hold NaN then.
    const bool full = j0 + TILE_COLS <= n;
% for r in range(rows):
    if (i0 + ${r} < m) {
        __global real *c${r} = c_p + c_off + (size_t)(i0 + ${r}) * ldc + j0;
        ${vec} v0 = alpha * acc${r}_0, v1 = alpha * acc${r}_1;
        if (full) {
            if (beta != 0) {
                v0 += beta * vload${width}(0, c${r});
                v1 += beta * vload${width}(1, c${r});
            }
            vstore${width}(v0, 0, c${r});
            vstore${width}(v1, 1, c${r});
        } else {
            const real values[TILE_COLS] = {
                ${", ".join(["v0.s%x" % q for q in range(width)] + ["v1.s%x" % q for q in range(width)])}
            };
            for (index_t q = 0; j0 + q < n; q++)
                c${r}[q] = beta != 0 ? values[q] + beta * c${r}[q] : values[q];
        }
    }
% endfor
}
