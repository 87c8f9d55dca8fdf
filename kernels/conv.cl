## conv.cl: 2-D convolution as im2col + GEMM (clnet/ops/conv.py), in PyTorch's NCHW layout.
##
## For a chunk of `samples` images x (samples, channels, height, width), the column matrix
##   cols[(c * kh + ky) * kw + kx, (n * out_h + oy) * out_w + ox]
##     = x[n, c, oy * sh - ph + ky * dh, ox * sw - pw + kx * dw]     (0 outside the image)
## has a row per weight of a filter and a column per output pixel, so that the product
## weights (out, in * kh * kw) @ cols is the convolution, (out, samples * out_h * out_w); the
## groups are blocks of rows of both. ph, pw: the padding before (top, left); the padding after
## is only the bounds check, so asymmetric padding ("same" with an even kernel) costs nothing.
##
##   im2col:        x -> cols, plainly or as the GEMM's packed B (tile_cols)
##   col2im:        cols -> dx, each pixel the sum of the columns that read it (a gather: no atomics)
##   conv_output:   product (out, samples, pixels) -> out (samples, out, pixels), + bias, f (keeping
##                  z when keep_z): the layer's epilogue, with the layout change
##   conv_delta:    delta (samples, out, pixels) * f'(a or z) -> dz (out, samples, pixels)
##   channel_sums:  the bias gradient, per channel of delta (samples, out, pixels)
##
## Params: dtype; conv_output and conv_delta also activation (None: none), keep_z, has_bias.
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>
<%namespace name="act" file="activations.cl"/>
<%
    geometry = ("index_t channels, index_t height, index_t width, index_t kh, index_t kw, index_t sh, "
                "index_t sw, index_t ph, index_t pw, index_t dh, index_t dw, index_t out_h, index_t out_w, "
                "index_t samples")
    width_v = v.attr.vector_width(dtype)
    vec = "real%d" % width_v
    activation = context.get("activation")  # the im2col, col2im and channel_sums build needs only dtype
    keep_z, has_bias = context.get("keep_z", False), context.get("has_bias", False)
    tile_cols = context.get("tile_cols", 0)  # im2col's packed layout (0: plain)
%>
#define ZERO ((${vec})(0))
#define ONE ((${vec})(1))

// One work-item per (row of cols, image, output row): out_w adjacent columns, each a load from
// the image row (no division in the loop). With tile_cols (a template param), cols is written as
// clnet's GEMM reads a packed B: each group's rows cut into panels of tile_cols columns, each
// panel stored row by row, zeros past the last column; so the product needs no packing pass.
${kernel("im2col", "const real *x, real *cols, index_t rows_per_group, " + geometry)} {
    const index_t line = get_global_id(0), k = get_global_id(1);
    const size_t columns = (size_t)samples * out_h * out_w;
    if (k >= channels * kh * kw || line >= samples * out_h) return;
    const index_t n = line / out_h, oy = line % out_h;
    const index_t c = k / (kh * kw), ky = (k / kw) % kh, kx = k % kw;
    const int iy = (int)(oy * sh + ky * dh) - (int)ph, x0 = (int)(kx * dw) - (int)pw;
    const bool row_inside = iy >= 0 && iy < (int)height;
    __global const real *from = x_p + x_off + (((size_t)n * channels + c) * height + (row_inside ? iy : 0)) * width;
    const size_t j0 = (size_t)line * out_w;
% if tile_cols:
    const size_t padded = (columns + ${tile_cols - 1}) / ${tile_cols} * ${tile_cols};
    const index_t g = k / rows_per_group, kg = k % rows_per_group;
    __global real *to = cols_p + cols_off + (size_t)g * (padded / ${tile_cols}) * rows_per_group * ${tile_cols};
    #define AT(j) ((((j) / ${tile_cols}) * rows_per_group + kg) * ${tile_cols} + (j) % ${tile_cols})
% else:
    __global real *to = cols_p + cols_off + (size_t)k * columns;
    #define AT(j) (j)
% endif
    for (index_t ox = 0; ox < out_w; ox++) {
        const int ix = (int)(ox * sw) + x0;
        to[AT(j0 + ox)] = row_inside && ix >= 0 && ix < (int)width ? from[ix] : 0;
    }
% if tile_cols:
    if (line == samples * out_h - 1)  // the last panel's columns past the end
        for (size_t j = columns; j < padded; j++) to[AT(j)] = 0;
% endif
    #undef AT
}

// One work-item per (image, channel, input row): the row's dx, each pixel the sum of the columns
// of the output pixels whose window holds it. The row is summed in place, one (ky, kx) at a time,
// walking the output pixels (no division in the loop): each pass reads a run of a row of cols.
${kernel("col2im", "const real *cols, real *dx, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= samples * channels * height) return;
    const index_t iy = item % height, c = (item / height) % channels, n = item / (height * channels);
    const size_t columns = (size_t)samples * out_h * out_w;
    __global real *to = dx_p + dx_off + (size_t)item * width;
    for (index_t ix = 0; ix < width; ix++) to[ix] = 0;
    for (index_t ky = 0; ky < kh; ky++) {
        const int ty = (int)(iy + ph) - (int)(ky * dh);
        if (ty < 0 || ty % (int)sh != 0 || ty / (int)sh >= (int)out_h) continue;
        const size_t line = ((size_t)n * out_h + ty / sh) * out_w;
        for (index_t kx = 0; kx < kw; kx++) {
            __global const real *from = cols_p + cols_off + ((size_t)(c * kh + ky) * kw + kx) * columns + line;
            const int x0 = (int)(kx * dw) - (int)pw;  // ix = ox * sw + x0
            for (index_t ox = 0; ox < out_w; ox++) {
                const int ix = (int)(ox * sw) + x0;
                if (ix >= 0 && ix < (int)width) to[ix] += from[ox];
            }
        }
    }
}

// The filters of the convolution that computes dx for a stride-1 one: flipped[g * in_g + c, co, ky, kx]
// = w[g * out_g + co, c, kh - 1 - ky, kw - 1 - kx] (in_g, out_g: channels per group).
// Work-items take BLOCK x BLOCK squares of a transpose, so that their reads and their writes each
// stay on a few cache lines (one element per work-item read a new line per element: flipping
// 512 x 512 3x3 filters took 17 ms on PoCL).
#define BLOCK 16

// The filters of the transposed convolution: flipped[g, c, co, ky, kx] = w[g, co, c, kh-1-ky, kw-1-kx].
// One work-item per block of (out channel, in channel) pairs of a group.
${kernel("flip_weights", "const real *w, real *flipped, index_t out_channels, index_t in_g, index_t groups, "
                         "index_t kh, index_t kw")} {
    const index_t field = kh * kw, out_g = out_channels / groups;
    const index_t across = (in_g + BLOCK - 1) / BLOCK, down = (out_g + BLOCK - 1) / BLOCK;
    const index_t block = get_global_id(0);
    if (block >= groups * down * across) return;
    const index_t g = block / (down * across), co0 = (block / across) % down * BLOCK, c0 = block % across * BLOCK;
    for (index_t co = co0; co < min(co0 + BLOCK, out_g); co++)
        for (index_t c = c0; c < min(c0 + BLOCK, in_g); c++) {
            __global const real *from = w_p + w_off + ((size_t)(g * out_g + co) * in_g + c) * field;
            __global real *to = flipped_p + flipped_off + ((size_t)(g * in_g + c) * out_g + co) * field;
            for (index_t t = 0; t < field; t++) to[t] = from[field - 1 - t];
        }
}

// dst (rows, cols) = src.T, src (cols, rows), or += with accumulate: a weight gradient computed
// transposed; src may be `parts` such matrices one after the other (a product cut along k), added
// in order. One work-item per block.
${kernel("transpose_into", "const real *src, real *dst, index_t rows, index_t cols, index_t accumulate, "
                           "index_t parts")} {
    const index_t across = (cols + BLOCK - 1) / BLOCK, block = get_global_id(0);
    if (block >= across * ((rows + BLOCK - 1) / BLOCK)) return;
    const index_t r0 = block / across * BLOCK, c0 = block % across * BLOCK;
    const size_t size = (size_t)rows * cols;
    for (index_t r = r0; r < min(r0 + BLOCK, rows); r++)
        for (index_t c = c0; c < min(c0 + BLOCK, cols); c++) {
            __global const real *from = src_p + src_off + (size_t)c * rows + r;
            real v = from[0];
            for (index_t p = 1; p < parts; p++) v += from[p * size];
            dst_p[dst_off + (size_t)r * cols + c] = accumulate ? dst_p[dst_off + (size_t)r * cols + c] + v : v;
        }
}

% if activation is not None:
<%
    value = "z" if activation == "linear" else act.attr.ACTIVATIONS[activation][0]
    slope_source = act.attr.ACTIVATIONS[activation][2]
    extra = act.attr.signature_extra(activation)
    where = {"product": "(size_t)co * samples * pixels + (size_t)n * pixels",
             "out": "((size_t)n * channels + co) * pixels"}
%>
// Dimension 1: (image, channel) rows of the output; dimension 0: vectors of a row's pixels.
${kernel("conv_output", "const real *product, const real *bias, real *z, real *out, index_t channels, "
                        "index_t pixels, index_t samples" + extra)} {
    const index_t row = get_global_id(1), n = row / channels, co = row % channels;
% if has_bias:
    const real b = bias_p[bias_off + co];
% else:
    const real b = 0;
% endif
<%v:elementwise n="pixels" inputs="${['product']}" outputs="${['out', 'z'] if keep_z else ['out']}" base="${{'product': where['product'], 'out': where['out'], 'z': where['out']}}">
    ${vec} z_ = product + b;
% if keep_z:
    z = z_;
% endif
    {
        const ${vec} z = z_;
        ${vec} a;
        a = ${value};
        out = a;
    }
</%v:elementwise>
}

// dz (out, samples, pixels) = delta (samples, out, pixels) * f'(saved), saved the output a or the
// logits z (what the activation's derivative reads); the bias gradient is dz's row sums.
${kernel("conv_delta", "const real *delta, const real *%s, real *dz, index_t channels, index_t pixels, "
                       "index_t samples%s" % (slope_source, extra))} {
    const index_t row = get_global_id(1), n = row / channels, co = row % channels;
<%v:elementwise n="pixels" inputs="${['delta', slope_source]}" outputs="${['dz']}" base="${{'delta': where['out'], slope_source: where['out'], 'dz': where['product']}}">
% if activation == "linear":
    dz = delta;
% else:
    dz = delta * (${act.attr.ACTIVATIONS[activation][1]});
% endif
</%v:elementwise>
}
% endif

// out[r] (+)= the sum of row r of a (rows, cols) x: one work-group per row, a tree in local memory.
// out[c] (+)= the sum of channel c of x (samples, channels, pixels): one work-group per channel,
// CPUs: each work-item whole runs of `pixels` (images lid, lid + size, ...) as vectors; GPUs:
// neighbouring work-items on neighbouring elements. Then a tree over the group, in a fixed order.
${kernel("channel_sums", "const real *x, real *out, index_t samples, index_t pixels, index_t accumulate, "
                         "local real *partial")} {
    const index_t c = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    const index_t channels = get_num_groups(0);
    __global const real *from = x_p + x_off + (size_t)c * pixels;
    real sum = 0;
% if context.get("contiguous", False):
    const index_t vectors = pixels / ${width_v};
    for (index_t n = lid; n < samples; n += size) {
        __global const real *run = from + (size_t)n * channels * pixels;
        ${vec} sums = 0;
        for (index_t i = 0; i < vectors; i++) sums += vload${width_v}(i, run);
        sum += ${" + ".join("sums.s%x" % q for q in range(width_v))};
        for (index_t i = vectors * ${width_v}; i < pixels; i++) sum += run[i];
    }
% else:
    for (size_t i = lid; i < (size_t)samples * pixels; i += size)
        sum += from[(i / pixels) * channels * pixels + i % pixels];
% endif
    partial[lid] = sum;
    for (index_t stride = size / 2; stride > 0; stride /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < stride) partial[lid] += partial[lid + stride];
    }
    if (lid == 0) out_p[out_off + c] = accumulate ? out_p[out_off + c] + partial[0] : partial[0];
}

