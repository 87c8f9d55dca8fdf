## gemm.cl: clnet's own GEMM for CPU devices, C = alpha * op(A) @ op(B) + beta * C.
##
## Register-blocked for PoCL, which runs one work-item's code as written (it does not
## vectorize across work-items here): each work-item computes a ${rows}-row by 2 x ${width}-column
## tile of C in ${2 * rows} vector accumulators, the shape of BLIS's Zen microkernels (6 x 16
## floats in 12 AVX2 registers). Every step over k loads two vectors of B and ${rows} scalars of A
## and does ${2 * rows} multiply-adds written as a * b + c: PoCL contracts those into FMAs,
## while the fma() and mad() builtins ran 9x slower there.
##
## B is read `packed` by pack_b or pack_b_t (kernels/pack.cl): op(B) cut into panels of TILE_COLS
## columns, each panel stored k by k, so a work-item streams its panel contiguously; the last
## panel is padded with zeros. A is read in place, TILE_ROWS row streams, when it is not
## transposed; a transposed A is read in place too when its rows are close, else pack_a first
## lays it out the same way as B. Rows past m repeat the last row; their results are dropped.
## ops.tiled_gemm decides what to pack by row stride (IN_PLACE_STRIDE): with rows far apart,
## each step over k would cost a new page.
##
## Params: dtype; rows (tile rows); width (vector width: 8 floats or 4 doubles = 256 bits, or
## 16 / 8 on AVX-512); a_layout: "packed" (by pack_a), "rows" (A read in place) or "columns"
## (A.T read in place); packed_b (True: B packed; False: op(B) = B read in place, rows of
## TILE_COLS); epilogue (None, or the activation of a fused forward pass: + bias, z kept when
## keep_z, f; a parametrized activation takes its act_alpha argument); c_transposed (with an epilogue: the tile is of C.T, see epilogue_row);
## split_k: dimension 2 cuts k into parts of k_part steps, part p writing its own product of the
## part's columns of op(A) and rows of op(B) to C + p * m * ldc (split_k.cl's sum_parts adds them);
## batched: dimension 2 is a batch of products, product p's A, B and C a_stride, b_stride and c_stride
## elements after product 0's (one launch for Winograd's 16).
<%include file="tiles.cl"/>
<%namespace name="act" file="activations.cl"/>
<%
    vec = ("float%d" if dtype == "float32" else "double%d") % width
    hvec = ("float%d" if dtype == "float32" else "double%d") % (8 if dtype == "float32" else 4)
%>
#define ZERO ((${hvec})(0))
#define ONE ((${hvec})(1))

// One tile of C per work-item: dimension 0 walks tile rows, dimension 1 tile columns, so the
// work-items of a work-group share one panel of B (K x TILE_COLS) while it is in cache.
<%
    args = ("index_t m, index_t n, index_t k_count, const real *a, index_t lda, const real *b, index_t ldb, "
            "real *c, index_t ldc, real alpha, real beta")
    if epilogue:
        args += ", const real *bias, real *z" + act.attr.signature_extra(epilogue)
    if split_k:
        args += ", index_t k_part"
    batched = context.get("batched", False)
    if batched:
        args += ", index_t a_stride, index_t b_stride, index_t c_stride"
    half = 8 if dtype == "float32" else 4  # 256 bits: the width PoCL's builtins are known to take
    halves = ["", ] if width == half else [".lo", ".hi"]
%>
<%def name="k_loop(b0, b1)">
    for (index_t k = 0; k < k_steps; k++) {
        ${b_loads(b0, b1)}
% for r in range(rows):
        const real x${r} = ${a_load(r)};
        acc${r}_0 = x${r} * b0 + acc${r}_0;
        acc${r}_1 = x${r} * b1 + acc${r}_1;
% endfor
        ${"ak += TILE_ROWS;" if a_layout == "packed" else "ka += lda;" if a_layout == "columns" else ""}
    }
</%def>
<%def name="b_loads(b0, b1)">
        const ${vec} b0 = ${b0}, b1 = ${b1};
        bk += ${"TILE_COLS" if packed_b else "ldb"};
</%def>
<%def name="a_load(r)"><%
    if a_layout == "packed":
        return "ak[%d]" % r
    if a_layout == "columns":
        return "a%d[ka]" % r
    return "a%d[k]" % r
%></%def>
${kernel("gemm_tile", args)} {
    const index_t i0 = get_global_id(0) * TILE_ROWS, j0 = get_global_id(1) * TILE_COLS;
    if (i0 >= m || j0 >= n) return;
% if split_k:
    // this work-item's part of k: steps k_first .. k_first + k_steps of the k_count
    const index_t k_first = get_global_id(2) * k_part, k_steps = min(k_part, k_count - k_first);
    const size_t c_at = c_off + get_global_id(2) * (size_t)m * ldc;
% elif batched:
    // product number get_global_id(2) of a batch: its matrices a_stride, b_stride, c_stride elements on
    const index_t k_first = 0, k_steps = k_count;
    const size_t c_at = c_off + get_global_id(2) * (size_t)c_stride;
    const size_t a_at = a_off + get_global_id(2) * (size_t)a_stride, b_at = b_off + get_global_id(2) * (size_t)b_stride;
% else:
    const index_t k_first = 0, k_steps = k_count;
    const size_t c_at = c_off;
% endif
% if not batched:
    const size_t a_at = a_off, b_at = b_off;
% endif
% if a_layout == "packed":
    __global const real *ak = a_p + a_at + (size_t)i0 * k_count + (size_t)k_first * TILE_ROWS;  // row tile i0 / TILE_ROWS of packed A
% elif a_layout == "columns":
    // op(A) = A.T read in place: the tile's rows of op(A) are adjacent in each row k of A
    % for r in range(rows):
    __global const real *a${r} = a_p + a_at + min(i0 + ${r}, m - 1);
    % endfor
    size_t ka = (size_t)k_first * lda;
% else:
    % for r in range(rows):
    __global const real *a${r} = a_p + a_at + (size_t)min(i0 + ${r}, m - 1) * lda + k_first;
    % endfor
% endif
% for r in range(rows):
    ${vec} acc${r}_0 = 0, acc${r}_1 = 0;
% endfor
    const bool full = j0 + TILE_COLS <= n;
% if packed_b:
    __global const real *bk = b_p + b_at + (size_t)j0 * k_count + (size_t)k_first * TILE_COLS;  // panel j0 / TILE_COLS, vector-aligned
    // a vector pointer, not vload: PoCL calls vload as a function, spilling every accumulator
    ${k_loop("((__global const %s *)bk)[0]" % vec, "((__global const %s *)bk)[1]" % vec)}
% else:
    // op(B) = B read in place, one row of TILE_COLS per step over k
    __global const real *bk = b_p + b_at + j0 + (size_t)k_first * ldb;
    if (full) {
        ${k_loop("*(__global const unaligned_vec *)bk", "*(__global const unaligned_vec *)(bk + %d)" % width)}
    } else {  // the last panel: columns past n are zeros
        ${k_loop("(%s)(%s)" % (vec, ", ".join("j0 + %d < n ? bk[%d] : 0" % (q, q) for q in range(width))),
                 "(%s)(%s)" % (vec, ", ".join("j0 + %d < n ? bk[%d] : 0" % (q + width, q + width) for q in range(width))))}
    }
% endif
    // the epilogue is written once, in a loop over the tile's rows, not once per row: unrolled
    // ${rows} times it made every variant of this kernel take seconds more to compile
    ${vec} tile[${2 * rows}];
% for r in range(rows):
    tile[${2 * r}] = acc${r}_0;
    tile[${2 * r + 1}] = acc${r}_1;
% endfor
    const index_t tile_rows = min((index_t)TILE_ROWS, m - i0);
% if epilogue and not c_transposed:
    // the bias of the tile's columns, read once for all its rows
    ${vec} bias0, bias1;
    if (full) {
        bias0 = ((__global const unaligned_vec *)(bias_p + bias_off + j0))[0];
        bias1 = ((__global const unaligned_vec *)(bias_p + bias_off + j0 + ${width}))[0];
    } else {
        bias0 = (${vec})(${", ".join("j0 + %d < n ? bias_p[bias_off + j0 + %d] : 0" % (q, q) for q in range(width))});
        bias1 = (${vec})(${", ".join("j0 + %d < n ? bias_p[bias_off + j0 + %d] : 0" % (q + width, q + width) for q in range(width))});
    }
% endif
% if epilogue:
    const bool second_half = j0 + ${width} < n;  // v1 holds columns of C (else only padding)
% endif
    for (index_t r = 0; r < tile_rows; r++) {
        __global real *c_row = c_p + c_at + (size_t)(i0 + r) * ldc + j0;
        ${vec} v0 = alpha * tile[2 * r], v1 = alpha * tile[2 * r + 1];
${epilogue_row()}
    }
}

## C = alpha * acc + beta * C, then, in the fused forward pass (`epilogue`: an activation's
## name), + bias, z kept when keep_z, and the activation: a = f(z) written to C. softmax needs
## the whole row in the tile (n <= TILE_COLS). C is not read when beta is 0 (it may hold NaN).
## c_transposed: the tile is of C.T (the product is W @ x.T, so that the small x is what gets
## packed): the bias goes by tile row, and each tile row is stored down a column of C.
<%def name="epilogue_row()">
% if epilogue:
    % if c_transposed:
        {  // this tile row is output unit i0 + r for the batch rows j0.. (the columns of the tile)
            const real b = bias_p[bias_off + i0 + r];
            v0 += b;
            v1 += b;
        }
    % else:
        v0 += bias0;
        v1 += bias1;
    % endif
    % if keep_z and c_transposed:
        ${store_column("z_p + z_off + (size_t)j0 * ldc + i0 + r")}
    % elif keep_z:
        ${store_row("z_p + z_off + (size_t)(i0 + r) * ldc + j0", "v0", "v1")}
    % endif
    % if epilogue == "softmax":
        {
            real e[TILE_COLS];
            vstore${width}(v0, 0, e);
            vstore${width}(v1, 1, e);
            real top = e[0];
            for (index_t q = 1; q < n; q++) top = fmax(top, e[q]);
            real sum = 0;
            for (index_t q = 0; q < n; q++) { e[q] = exp(e[q] - top); sum += e[q]; }
            const real scale = 1 / sum;
            for (index_t q = 0; q < n; q++) c_row[q] = e[q] * scale;
        }
    % else:
        % for v in ("v0", "v1"):
        ${"if (second_half)" if v == "v1" else ""} {
            % for h in halves:
            {
                const ${hvec} z = ${v}${h};
                ${hvec} a;
                a = ${act.attr.ACTIVATIONS[epilogue][0]};
                ${v}${h} = a;
            }
            % endfor
        }
        % endfor
        % if c_transposed:
        ${store_column("c_p + c_at + (size_t)j0 * ldc + i0 + r")}
        % else:
        ${store_row("c_row", "v0", "v1")}
        % endif
    % endif
% else:
        if (full) {
            if (beta != 0) {
                v0 += beta * vload${width}(0, c_row);
                v1 += beta * vload${width}(1, c_row);
            }
            vstore${width}(v0, 0, c_row);
            vstore${width}(v1, 1, c_row);
        } else {
            const real values[TILE_COLS] = {
                ${", ".join(["v0.s%x" % q for q in range(width)] + ["v1.s%x" % q for q in range(width)])}
            };
            for (index_t q = 0; j0 + q < n; q++)
                c_row[q] = beta != 0 ? values[q] + beta * c_row[q] : values[q];
        }
% endif
</%def>
<%def name="store_row(to, v0, v1)">
        {
            __global real *to_ = ${to};
            if (full) {
                vstore${width}(${v0}, 0, to_);
                vstore${width}(${v1}, 1, to_);
            } else {
                const real values[TILE_COLS] = {
                    ${", ".join(["%s.s%x" % (v0, q) for q in range(width)] + ["%s.s%x" % (v1, q) for q in range(width)])}
                };
                for (index_t q = 0; j0 + q < n; q++) to_[q] = values[q];
            }
        }
</%def>
<%def name="store_column(to)">
        {  // a tile row into a column of the (row-major) output: one element per batch row
            __global real *to_ = ${to};
            const real values[TILE_COLS] = {
                ${", ".join(["v0.s%x" % q for q in range(width)] + ["v1.s%x" % q for q in range(width)])}
            };
            for (index_t q = 0; q < TILE_COLS && j0 + q < n; q++) to_[(size_t)q * ldc] = values[q];
        }
</%def>
