## winograd.cl: 3x3 convolutions of stride 1 by Winograd's F(2x2, 3x3) (clnet/ops/winograd.py). Each
## 2x2 tile of the output comes from the 4x4 patch of padded input under it,
##   Y = A^T [(G g G^T) * (B^T d B)] A     (* elementwise: 16 products where the sums need 36),
## and the sums over input channels are 16 matrix products, one per element e of the 4x4 transform:
##   M[e] (out, tiles) = U[e] (out, in) @ V[e] (in, tiles),
## U the transformed filters, V the transformed patches (tiles: (sample, tile row, tile column)). Each
## of the 16 matrices of U, V and M starts `plane` elements after the one before: a little more than
## its size, since 16 streams of writes a power of two apart conflict in the caches (on PoCL: 16 MB
## written in 7-10 ms, 2.8-3.7 with the planes apart by 16-64 more elements).
##
##   winograd_filters: w (out, in, 3, 3) -> U (16, out, in); flip: w holds (in, out, 3, 3), the filters of
##                     the convolution whose transposed one this is, read flipped and transposed
##   winograd_patches: x (samples, in, height, width) -> V, each e's (in, tiles) as the GEMM's packed B
##                     (panels of tile_cols columns, row by row; the last panel's columns past the
##                     tiles are not written: the GEMM computes them and does not store them)
##   winograd_output:  M -> out (samples, out, out_h, out_w), + bias, the activation (z kept with keep_z)
##
## B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
## A^T = [1 1 1 0; 0 1 -1 -1]: adds and halvings, exact in binary but for rounding.
##
## Params: dtype; tile_cols (winograd_patches); flip (winograd_filters); activation, keep_z, has_bias
## (winograd_output).
<%include file="common.cl"/>
<%namespace name="act" file="activations.cl"/>
<%
    activation = context.get("activation") or "linear"
    keep_z, has_bias = context.get("keep_z", False), context.get("has_bias", False)
    tile_cols, flip = context.get("tile_cols"), context.get("flip", False)
    pair = "float2" if dtype == "float32" else "double2"
%>
#define ZERO ((${pair})(0))
#define ONE ((${pair})(1))

// One work-item per filter (out channel o, in channel c): U[e, o, c]. flip: w (channels, out_channels,
// 3, 3), U[e, o, c] the transform of w[c, o] turned 180 degrees, read with a stride (512 x 512
// filters: 5.8 ms; in w's order, U's writes strided, 10.8; transposed in local memory, 5.7).
${kernel("winograd_filters", "const real *w, real *u, index_t out_channels, index_t channels, index_t plane")} {
    const index_t i = get_global_id(0);
    if (i >= out_channels * channels) return;
    const index_t o = i / channels, c = i % channels;
    real g[9];
% if flip:
    for (int t = 0; t < 9; t++) g[t] = w_p[w_off + ((size_t)c * out_channels + o) * 9 + 8 - t];
% else:
    for (int t = 0; t < 9; t++) g[t] = w_p[w_off + (size_t)i * 9 + t];
% endif
    real h[12];  // G g: 4 rows of 3
    for (int x = 0; x < 3; x++) {
        h[x] = g[x];
        h[3 + x] = (g[x] + g[3 + x] + g[6 + x]) * (real)0.5;
        h[6 + x] = (g[x] - g[3 + x] + g[6 + x]) * (real)0.5;
        h[9 + x] = g[6 + x];
    }
    __global real *to = u_p + u_off + (size_t)o * channels + c;
    for (int y = 0; y < 4; y++) {  // (G g) G^T
        const real a = h[3 * y], b = h[3 * y + 1], d = h[3 * y + 2];
        to[(4 * y) * plane] = a;
        to[(4 * y + 1) * plane] = (a + b + d) * (real)0.5;
        to[(4 * y + 2) * plane] = (a - b + d) * (real)0.5;
        to[(4 * y + 3) * plane] = d;
    }
}

## winograd_patches only in its own build (the packed layout's tile_cols compiled in)
% if tile_cols:
// One work-item per (in channel, tile), tiles fastest: v = B^T d B of the 4x4 patch whose top left is
// (2 ty - top, 2 tx - left), zeros outside the image.
${kernel("winograd_patches", "const real *x, real *v, index_t channels, index_t height, index_t width, "
                             "index_t top, index_t left, index_t tiles_h, index_t tiles_w, index_t samples, "
                             "index_t plane")} {
    const index_t i = get_global_id(0), tiles = samples * tiles_h * tiles_w;
    if (i >= channels * tiles) return;
    const index_t c = i / tiles, t = i % tiles, n = t / (tiles_h * tiles_w);
    const int y0 = 2 * (int)(t / tiles_w % tiles_h) - (int)top, x0 = 2 * (int)(t % tiles_w) - (int)left;
    __global const real *image = x_p + x_off + ((size_t)n * channels + c) * height * width;
    real d[16];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            const int iy = y0 + y, ix = x0 + x;
            d[4 * y + x] = iy >= 0 && iy < (int)height && ix >= 0 && ix < (int)width ? image[iy * (int)width + ix] : 0;
        }
    real h[16];  // B^T d
    for (int x = 0; x < 4; x++) {
        h[x] = d[x] - d[8 + x];
        h[4 + x] = d[4 + x] + d[8 + x];
        h[8 + x] = d[8 + x] - d[4 + x];
        h[12 + x] = d[4 + x] - d[12 + x];
    }
    __global real *to = v_p + v_off + ((size_t)(t / ${tile_cols}) * channels + c) * ${tile_cols} + t % ${tile_cols};
    for (int y = 0; y < 4; y++) {  // (B^T d) B
        const real a = h[4 * y], b = h[4 * y + 1], e = h[4 * y + 2], f = h[4 * y + 3];
        to[(4 * y) * plane] = a - e;
        to[(4 * y + 1) * plane] = b + e;
        to[(4 * y + 2) * plane] = e - b;
        to[(4 * y + 3) * plane] = b - f;
    }
}
% endif

<%
    args = ("const real *m, const real *bias, real *z, real *out, index_t out_channels, index_t out_h, "
            "index_t out_w, index_t tiles_h, index_t tiles_w, index_t samples, index_t plane"
            + act.attr.signature_extra(activation))
%>
// One work-item per (out channel, tile), tiles fastest: y = A^T m A, + bias, f; the tile's pixels past
// the output (odd sizes) not stored.
${kernel("winograd_output", args)} {
    const index_t i = get_global_id(0), tiles = samples * tiles_h * tiles_w;
    if (i >= out_channels * tiles) return;
    const index_t o = i / tiles, t = i % tiles, n = t / (tiles_h * tiles_w);
    const index_t y0 = 2 * (t / tiles_w % tiles_h), x0 = 2 * (t % tiles_w);
    __global const real *from = m_p + m_off + i;
    real h[8];  // A^T m: 2 rows of 4
    for (int x = 0; x < 4; x++) {
        const real a = from[x * plane], b = from[(4 + x) * plane], e = from[(8 + x) * plane],
                   f = from[(12 + x) * plane];
        h[x] = a + b + e;
        h[4 + x] = b - e - f;
    }
% if has_bias:
    const real shift = bias_p[bias_off + o];
% else:
    const real shift = 0;
% endif
    const size_t at = ((size_t)n * out_channels + o) * out_h * out_w;
    for (index_t y = 0; y < 2 && y0 + y < out_h; y++) {  // a row of the tile as a vector of 2 (as the activations take it)
        const ${pair} z = (${pair})(h[4 * y] + h[4 * y + 1] + h[4 * y + 2], h[4 * y + 1] - h[4 * y + 2] - h[4 * y + 3])
            + shift;
        ${pair} a;
        a = ${act.attr.ACTIVATIONS[activation][0]};
        const real zs[2] = {z.s0, z.s1}, as[2] = {a.s0, a.s1};
        for (index_t x = 0; x < 2 && x0 + x < out_w; x++) {
            const size_t to = at + (y0 + y) * out_w + x0 + x;
% if keep_z:
            z_p[z_off + to] = zs[x];
% endif
            out_p[out_off + to] = as[x];
        }
    }
}
