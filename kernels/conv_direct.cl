## conv_direct.cl: a stride-1 2-D convolution computed in place from zero-padded images, for CPU
## devices (clnet/ops/conv.py): no column matrix, the GEMM's register tile instead.
##
## Each work-item computes ${rows} output channels x ${2 * width} adjacent pixels of one output row
## in ${2 * rows} vector accumulators, as gemm.cl's tile does: every step over (channel, ky, kx)
## loads two vectors of the padded input row (pixels ox0 + kx ... : adjacent, since the stride is
## 1) and ${rows} scalars of the filters, and does ${2 * rows} multiply-adds. The epilogue adds the
## bias, keeps z when asked, applies the activation and stores NCHW rows directly; columns past
## out_w are computed from the padding and not stored.
##
##   pad_images: (samples, channels, height, width) -> zero-padded (samples, channels, height +
##               top + bottom, width + left + right + ${2 * width} of slack for the last tile)
##   pack_filters: the filters (out, in / groups, kh, kw) in the order conv_direct reads them (or, flip,
##               those of the transposed convolution, flipped and transposed on the way)
##   conv_direct: the convolution of the padded images with the packed filters
##   filter_gradient: the filters' gradient from the padded images and dz, the column matrix's
##               rows read in place from the images (no im2col), k cut into parts of image lines
##
## Params: dtype; rows; width (tiles.cl); activation (None: linear); keep_z; has_bias; fixed_kw (the
## filter's width compiled in, for the common small ones; 0: a loop); flip (pack_filters).
<%include file="tiles.cl"/>
<%namespace name="act" file="activations.cl"/>
<%
    activation = context.get("activation") or "linear"
    fixed_kw = context.get("fixed_kw", 0)  # the filter's width, compiled in (0: a loop)
    flip = context.get("flip", False)
    keep_z, has_bias = context.get("keep_z", False), context.get("has_bias", False)
    vec = ("float%d" if dtype == "float32" else "double%d") % width
    hvec = ("float%d" if dtype == "float32" else "double%d") % (8 if dtype == "float32" else 4)
    half = 8 if dtype == "float32" else 4  # 256 bits: the width PoCL's builtins are known to take
    halves = [""] if width == half else [".lo", ".hi"]
%>
#define ZERO ((${hvec})(0))
#define ONE ((${hvec})(1))

// One work-item per padded row: dimension 0 the rows (sample, channel, padded y), a loop along it.
${kernel("pad_images", "const real *x, real *padded, index_t planes, index_t height, index_t width, index_t top, "
                       "index_t left, index_t padded_h, index_t padded_w")} {
    const index_t line = get_global_id(0);
    if (line >= planes * padded_h) return;
    const index_t plane = line / padded_h, py = line % padded_h;
    __global real *to = padded_p + padded_off + (size_t)line * padded_w;
    const int y = (int)py - (int)top;
    if (y < 0 || y >= (int)height) {
        for (index_t px = 0; px < padded_w; px++) to[px] = 0;
        return;
    }
    __global const real *from = x_p + x_off + ((size_t)plane * height + y) * width;
    for (index_t px = 0; px < left; px++) to[px] = 0;
    for (index_t ix = 0; ix < width; ix++) to[left + ix] = from[ix];
    for (index_t px = left + width; px < padded_w; px++) to[px] = 0;
}

// The filters in the order conv_direct reads them: per tile of TILE_ROWS output channels of a group,
// step by step over (channel, ky, kx), the tile's rows side by side (zeros past the group's end):
// packed[(tile * k_count + k) * TILE_ROWS + r] = w[co0 + r, k]; with flip, w holds the filters of
// the convolution whose transposed one this is (flip_weights' flipped, read in place). One work-item
// per (tile, k): neighbours read neighbouring k of each row (one element each, reading a new cache
// line per element, packed 256 x 256 3x3 filters in 1.6-3.0 ms on PoCL, this in 0.3).
${kernel("pack_filters", "const real *w, real *packed, index_t out_g, index_t groups, index_t k_count, "
                         "index_t field")} {
    const index_t i = get_global_id(0), channel_tiles = (out_g + TILE_ROWS - 1) / TILE_ROWS;
    if (i >= groups * channel_tiles * k_count) return;
    const index_t k = i % k_count, tile = i / k_count, g = tile / channel_tiles;
    const index_t row0 = (tile % channel_tiles) * TILE_ROWS;
% if flip:
    // w (groups * k_count / field, out_g, field): the filter of (row, channel c, t) is w[g, c, row, field - 1 - t]
    const index_t c = k / field, t = k % field;
    __global const real *from = w_p + w_off + ((size_t)(g * (k_count / field) + c) * out_g) * field + field - 1 - t;
    const size_t step = field;
% else:
    __global const real *from = w_p + w_off + (size_t)g * out_g * k_count + k;
    const size_t step = k_count;
% endif
    __global real *to = packed_p + packed_off + (size_t)i * TILE_ROWS;
    for (index_t r = 0; r < TILE_ROWS; r++) to[r] = row0 + r < out_g ? from[(size_t)(row0 + r) * step] : 0;
}

<%
    args = ("const real *x, const real *w, const real *bias, real *z, real *out, index_t in_g, index_t out_g, "
            "index_t groups, index_t padded_h, index_t padded_w, index_t kh, index_t kw, index_t dh, index_t dw, "
            "index_t out_h, index_t out_w, index_t samples" + act.attr.signature_extra(activation))
%>
// Dimension 0: tiles of output channels (a group's), dimension 1: (sample, output row, tile of columns).
${kernel("conv_direct", args)} {
    const index_t channel_tiles = (out_g + TILE_ROWS - 1) / TILE_ROWS;
    const index_t column_tiles = (out_w + TILE_COLS - 1) / TILE_COLS;
    const index_t tile = get_global_id(0), place = get_global_id(1);
    if (tile >= groups * channel_tiles || place >= samples * out_h * column_tiles) return;
    const index_t g = tile / channel_tiles, co0 = g * out_g + (tile % channel_tiles) * TILE_ROWS;
    const index_t rows_here = min((index_t)TILE_ROWS, g * out_g + out_g - co0);
    const index_t ox0 = (place % column_tiles) * TILE_COLS, oy = (place / column_tiles) % out_h;
    const index_t n = place / (column_tiles * out_h);
    const index_t k_count = in_g * kh * kw;
    __global const real *wk = w_p + w_off + (size_t)tile * k_count * TILE_ROWS;  // pack_filters' layout
% for r in range(rows):
    ${vec} acc${r}_0 = 0, acc${r}_1 = 0;
% endfor
    __global const real *image = x_p + x_off + (((size_t)n * groups + g) * in_g * padded_h + oy) * padded_w + ox0;
    for (index_t c = 0; c < in_g; c++) {
        for (index_t ky = 0; ky < kh; ky++) {
            __global const real *row = image + ((size_t)c * padded_h + ky * dh) * padded_w;
% if fixed_kw:
            // the filter's width compiled in: the steps along a row unrolled
    % for kx in range(fixed_kw):
            ${step("row + %d * dw" % kx, "")}
    % endfor
% else:
            for (index_t kx = 0; kx < kw; kx++) {
                ${step("row + kx * dw", "k")}
            }
% endif
        }
    }
    // the epilogue, once per row of the tile (a loop: unrolled, it made builds seconds longer)
    ${tile_array()}
    const bool full = ox0 + TILE_COLS <= out_w;
    for (index_t r = 0; r < rows_here; r++) {
        const index_t co = co0 + r;
% if has_bias:
        const real b = bias_p[bias_off + co];
% else:
        const real b = 0;
% endif
        ${vec} v0 = tile_[2 * r] + b, v1 = tile_[2 * r + 1] + b;
        const size_t at = (((size_t)n * groups * out_g + co) * out_h + oy) * out_w + ox0;
% if keep_z:
        ${store("z_p + z_off + at", "v0", "v1")}
% endif
% if activation != "linear":
    % for v in ("v0", "v1"):
        % for h in halves:
        {
            const ${hvec} z = ${v}${h};
            ${hvec} a;
            a = ${act.attr.ACTIVATIONS[activation][0]};
            ${v}${h} = a;
        }
        % endfor
    % endfor
% endif
        ${store("out_p + out_off + at", "v0", "v1")}
    }
}
// The filters' gradient of a stride-1 convolution with one group, transposed and in parts: part
// p of parts[p][r][co] = the sum over the lines (sample n, output row oy) first .. first +
// part_lines - 1 and their pixels ox of column-matrix row r = (channel c, ky, kx), which is the
// padded image x[n, c, oy + ky dh, ox + kx dw], times dz[co, (n, oy, ox)], read from dz packed by
// pack_b_t (panels of TILE_COLS output channels, step by step). gemm_tile's register tile: each
// work-item TILE_ROWS rows r by TILE_COLS channels; dimension 2: the parts.
${kernel("filter_gradient", "const real *x, const real *dz, real *parts, index_t rows, index_t out_channels, "
                            "index_t channels, index_t padded_h, index_t padded_w, index_t kh, index_t kw, "
                            "index_t dh, index_t dw, index_t out_h, index_t out_w, index_t lines, "
                            "index_t part_lines")} {
    const index_t i0 = get_global_id(0) * TILE_ROWS, j0 = get_global_id(1) * TILE_COLS;
    if (i0 >= rows || j0 >= out_channels) return;
    const index_t first = get_global_id(2) * part_lines, last = min(first + part_lines, lines);
    // where row r of the tile starts in an image's padded planes (rows past the end repeat the last)
% for r in range(rows):
    size_t at${r};
    {
        const index_t q = min(i0 + ${r}, rows - 1), c = q / (kh * kw), ky = q / kw % kh, kx = q % kw;
        at${r} = ((size_t)c * padded_h + ky * dh) * padded_w + kx * dw;
    }
% endfor
% for r in range(rows):
    ${vec} acc${r}_0 = 0, acc${r}_1 = 0;
% endfor
    __global const real *bk = dz_p + dz_off + (size_t)j0 * lines * out_w + (size_t)first * out_w * TILE_COLS;
    for (index_t line = first; line < last; line++) {
        const index_t n = line / out_h, oy = line % out_h;
        __global const real *image = x_p + x_off + ((size_t)n * channels * padded_h + oy) * padded_w;
% for r in range(rows):
        __global const real *a${r} = image + at${r};
% endfor
        for (index_t ox = 0; ox < out_w; ox++) {
            const ${vec} b0 = ((__global const ${vec} *)bk)[0], b1 = ((__global const ${vec} *)bk)[1];
            bk += TILE_COLS;
% for r in range(rows):
            const real v${r} = a${r}[ox];
            acc${r}_0 = v${r} * b0 + acc${r}_0;
            acc${r}_1 = v${r} * b1 + acc${r}_1;
% endfor
        }
    }
    ${tile_array()}
    const bool full = j0 + TILE_COLS <= out_channels;
    __global real *part = parts_p + parts_off + (size_t)get_global_id(2) * rows * out_channels + j0;
    for (index_t r = 0; r < min((index_t)TILE_ROWS, rows - i0); r++) {
        ${store("part + (size_t)(i0 + r) * out_channels", "tile_[2 * r]", "tile_[2 * r + 1]", "j0", "out_channels")}
    }
}

## The accumulators as an array tile_[2 r + h]: row r's half h, for an epilogue that loops over rows.
<%def name="tile_array()">
    ${vec} tile_[${2 * rows}];
% for r in range(rows):
    tile_[${2 * r}] = acc${r}_0;
    tile_[${2 * r + 1}] = acc${r}_1;
% endfor
</%def>
<%def name="step(at, k)">
                {
                    __global const real *at_ = ${at};
                    const ${vec} b0 = *(__global const unaligned_vec *)at_;
                    const ${vec} b1 = *(__global const unaligned_vec *)(at_ + ${width});
% for r in range(rows):
                    const real a${r} = wk[${r}];
                    acc${r}_0 = a${r} * b0 + acc${r}_0;
                    acc${r}_1 = a${r} * b1 + acc${r}_1;
% endfor
                    wk += TILE_ROWS;
                }
</%def>
<%def name="store(to, v0, v1, first='ox0', end='out_w')">
        {
            __global real *to_ = ${to};
            if (full) {
                *(__global unaligned_vec *)to_ = ${v0};
                *(__global unaligned_vec *)(to_ + ${width}) = ${v1};
            } else {
                const real values[TILE_COLS] = {
                    ${", ".join(["%s.s%x" % (v0, q) for q in range(width)] + ["%s.s%x" % (v1, q) for q in range(width)])}
                };
                for (index_t q = 0; ${first} + q < ${end}; q++) to_[q] = values[q];
            }
        }
</%def>
