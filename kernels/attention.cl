## attention.cl: scaled dot-product attention, every sample and head in one launch.
##
## The queries, keys and values are heads of rows: element d of head h at position t of sample b
## is at  at + (b * seq + t) * stride + h * head_size + d  of its array (the projections' output
## (batch, seq, 3 * heads * head_size) holds all three, `at` apart). Scores and probabilities are
## (batch * heads, seq, seq). Dimension 2 of every launch is b * heads + h. Each sum runs in a
## fixed order (the same bits on every run); with `causal`, position i sees positions j <= i only.
##
## `width` (a template parameter) divides head_size: each work-item handles vectors of `width`
## elements of a head (PoCL runs each work-item's code as written: it does not vectorize across
## work-items), and the heads' rows are read with vload.
<%include file="common.cl"/>
<%
    tile = context.get("tile", 1)  # positions per work-item in the products (clnet.ops.attention.TILE)
    rows = context.get("rows", 1)  # rows of scores per work-item of dots (clnet.ops.attention.ROWS)
    vecs = context.get("vecs", 1)  # vectors of a head per work-item of the weighted sums
    vec = "real%d" % width if width > 1 else "real"
    load = ("vload%d" % width) if width > 1 else ""
    def vload(at):
        return "%s(0, %s)" % (load, at) if width > 1 else "*(%s)" % at
    def vstore(value, at):
        return "vstore%d(%s, 0, %s)" % (width, value, at) if width > 1 else "*(%s) = %s" % (at, value)
    def total(name):
        return " + ".join("%s.s%x" % (name, q) for q in range(width)) if width > 1 else name
%>

#define TILE ${tile}  // positions per work-item in the products
#define ROWS ${rows}  // rows of scores per work-item in dots
#define HEAD(a, stride, at, b, t, h) (a##_p + a##_off + (at) + ((size_t)(b) * seq + (t)) * (stride) + (size_t)(h) * head_size)

// out[bh, i, j] = scale * sum over d of x[b, i, h, d] * y[b, j, h, d] (0 where causal and j > i).
// Each work-item: ROWS consecutive i by TILE consecutive j, each row of x and y read once per
// tile. Dimension 0: j / TILE; dimension 1: i / ROWS.
${kernel("dots", "const real *x, const real *y, real *out, index_t seq, index_t heads, index_t head_size, "
                 "index_t x_stride, index_t x_at, index_t y_stride, index_t y_at, real scale, int causal")} {
    const index_t j0 = get_global_id(0) * TILE, i0 = get_global_id(1) * ROWS, bh = get_global_id(2);
    if (j0 >= seq || i0 >= seq) return;
    const index_t b = bh / heads, h = bh % heads;
% for r in range(rows):
    __global const real *x${r} = HEAD(x, x_stride, x_at, b, min(i0 + ${r}, seq - 1), h);
% endfor
% for t in range(tile):
    __global const real *y${t} = HEAD(y, y_stride, y_at, b, min(j0 + ${t}, seq - 1), h);
% endfor
% for r in range(rows):
% for t in range(tile):
    ${vec} s${r}_${t} = 0;
% endfor
% endfor
    if (!causal || j0 <= i0 + ROWS - 1) {
        for (index_t d = 0; d < head_size; d += ${width}) {
% for t in range(tile):
            const ${vec} yv${t} = ${vload("y%d + d" % t)};
% endfor
% for r in range(rows):
            const ${vec} xv${r} = ${vload("x%d + d" % r)};
% for t in range(tile):
            s${r}_${t} += xv${r} * yv${t};
% endfor
% endfor
        }
    }
% for r in range(rows):
    if (i0 + ${r} < seq) {
        __global real *row = out_p + out_off + ((size_t)bh * seq + i0 + ${r}) * seq;
% for t in range(tile):
        if (j0 + ${t} < seq) row[j0 + ${t}] = causal && j0 + ${t} > i0 + ${r} ? 0 : (${total("s%d_%d" % (r, t))}) * scale;
% endfor
    }
% endfor
}

// weighted_sum:            out[b, i, h, d] = sum over j of w[bh, i, j] * y[b, j, h, d]
//                          (j <= i where causal: w is 0 past i);
// weighted_sum_transposed: out[b, j, h, d] = sum over i of w[bh, i, j] * y[b, i, h, d]
//                          (i >= j where causal: w is 0 before).
// Each work-item: VECS vectors of d for TILE consecutive output positions o, reading each row of y
// once. Dimension 0: d / (width * VECS); dimension 1: o / TILE.
% for transposed in (False, True):
${kernel("weighted_sum" + ("_transposed" if transposed else ""),
         "const real *w, const real *y, real *out, index_t seq, index_t heads, index_t head_size, "
         "index_t y_stride, index_t y_at, index_t out_stride, index_t out_at, int causal")} {
    const index_t d = get_global_id(0) * ${width * vecs}, o0 = get_global_id(1) * TILE, bh = get_global_id(2);
    if (d >= head_size || o0 >= seq) return;
    const index_t b = bh / heads, h = bh % heads;
    __global const real *wm = w_p + w_off + (size_t)bh * seq * seq;
    __global const real *yc = HEAD(y, y_stride, y_at, b, 0, h) + d;
% for t in range(tile):
    const size_t at${t} = min(o0 + ${t}, seq - 1);  // the position of tile row t, within seq
% for u in range(vecs):
    ${vec} sum${t}_${u} = 0;
% endfor
% endfor
% if transposed:
    for (index_t k = causal ? o0 : 0; k < seq; k++) {
% else:
    const index_t end = causal ? min(o0 + TILE, seq) : seq;
    for (index_t k = 0; k < end; k++) {
% endif
% for u in range(vecs):
        const ${vec} yv${u} = ${vload("yc + (size_t)k * y_stride + %d" % (u * width))};
% endfor
% for t in range(tile):
        const real p${t} = wm[${"(size_t)k * seq + at%d" % t if transposed else "at%d * seq + k" % t}];
% for u in range(vecs):
        sum${t}_${u} += p${t} * yv${u};
% endfor
% endfor
    }
% for t in range(tile):
    if (o0 + ${t} < seq) {
% for u in range(vecs):
        ${vstore("sum%d_%d" % (t, u), "HEAD(out, out_stride, out_at, b, o0 + %d, h) + d + %d" % (t, u * width))};
% endfor
    }
% endfor
}

% endfor
// p[r, :] = the softmax of s[r, :] (row r = bh * seq + i), over j <= i where causal and 0 beyond;
// less the row's largest first, so that no exp overflows. p may be s. One work-item per row, on
// vectors of `width` elements (the exps are most of the work) and the row's rest one by one.
${kernel("softmax", "const real *s, real *p, index_t rows, index_t seq, int causal")} {
    const index_t r = get_global_id(0);
    if (r >= rows) return;
    const index_t end = causal ? r % seq + 1 : seq, whole = end - end % ${width};
    __global const real *sr = s_p + s_off + (size_t)r * seq;
    __global real *pr = p_p + p_off + (size_t)r * seq;
    real top = sr[0];
% if width > 1:
    ${vec} tops = top;
    for (index_t j = 0; j < whole; j += ${width}) tops = fmax(tops, ${vload("sr + j")});
% for q in range(width):
    top = fmax(top, tops.s${"%x" % q});
% endfor
% endif
    for (index_t j = whole; j < end; j++) top = fmax(top, sr[j]);
    real total = 0;
% if width > 1:
    ${vec} totals = 0;
    for (index_t j = 0; j < whole; j += ${width}) {
        const ${vec} e = exp(${vload("sr + j")} - top);
        ${vstore("e", "pr + j")};
        totals += e;
    }
    total = ${total("totals")};
% endif
    for (index_t j = whole; j < end; j++) {
        const real e = exp(sr[j] - top);
        pr[j] = e;
        total += e;
    }
% if width > 1:
    for (index_t j = 0; j < whole; j += ${width}) ${vstore(vload("pr + j") + " / total", "pr + j")};
% endif
    for (index_t j = whole; j < end; j++) pr[j] /= total;
    for (index_t j = end; j < seq; j++) pr[j] = 0;
}

// g[r, j] = scale * p[r, j] * (g[r, j] - sum over k of p[r, k] * g[r, k]): dC/ds from dC/dp
// (g) through the softmax p, in place. One work-item per row.
${kernel("softmax_backward", "const real *p, real *g, index_t rows, index_t seq, real scale, int causal")} {
    const index_t r = get_global_id(0);
    if (r >= rows) return;
    const index_t end = causal ? r % seq + 1 : seq;
    __global const real *pr = p_p + p_off + (size_t)r * seq;
    __global real *gr = g_p + g_off + (size_t)r * seq;
    real dot = 0;
    for (index_t j = 0; j < end; j++) dot += pr[j] * gr[j];
    for (index_t j = 0; j < end; j++) gr[j] = scale * pr[j] * (gr[j] - dot);
    for (index_t j = end; j < seq; j++) gr[j] = 0;
}
