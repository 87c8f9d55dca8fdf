## depthwise.cl: convolutions with one filter per channel (groups = channels = out_channels:
## MobileNet's and EfficientNet's), without a column matrix: the forward pass and the input
## gradient read the images and the few taps of a filter directly, the filters' and the bias's
## gradients are a fixed-order sum per tap (the same bits every run).
##
## Params: dtype and the geometry compiled in (kh, kw, sh, sw, ph, pw, dh, dw), so the tap loops
## unroll. A plane is one channel of one sample.
<%include file="common.cl"/>
<%
    kh, kw, sh, sw, ph, pw, dh, dw = (context.get(n) for n in ("kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw"))
    geometry = "index_t planes, index_t channels, index_t height, index_t width, index_t out_h, index_t out_w"
%>

// z = conv(x) (+ bias): one work-item per output row of a plane.
${kernel("depthwise_forward", "const real *x, const real *w, const real *bias, real *z, index_t has_bias, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * out_h) return;
    const index_t plane = item / out_h, oy = item % out_h, c = plane % channels;
    __global const real *image = x_p + x_off + (size_t)plane * height * width;
    __global const real *filter = w_p + w_off + (size_t)c * ${kh * kw};
    real taps[${kh * kw}];
    for (int t = 0; t < ${kh * kw}; t++) taps[t] = filter[t];
    const real shift = has_bias ? bias_p[bias_off + c] : (real)0;
    for (index_t ox = 0; ox < out_w; ox++) {
        real sum = 0;
% for ky in range(kh):
        {
            const int y = (int)(oy * ${sh}) - ${ph} + ${ky * dh};
            if (y >= 0 && y < (int)height) {
% for kx in range(kw):
                {
                    const int xx = (int)(ox * ${sw}) - ${pw} + ${kx * dw};
                    if (xx >= 0 && xx < (int)width) sum += image[y * (int)width + xx] * taps[${ky * kw + kx}];
                }
% endfor
            }
        }
% endfor
        z_p[z_off + (size_t)item * out_w + ox] = sum + shift;
    }
}

// dx = the gradient of the input from dz: one work-item per input row of a plane gathers, for
// each pixel, the outputs whose windows hold it (no pixel written twice).
${kernel("depthwise_input_gradient", "const real *dz, const real *w, real *dx, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * height) return;
    const index_t plane = item / height, iy = item % height, c = plane % channels;
    __global const real *grads = dz_p + dz_off + (size_t)plane * out_h * out_w;
    __global const real *filter = w_p + w_off + (size_t)c * ${kh * kw};
    real taps[${kh * kw}];
    for (int t = 0; t < ${kh * kw}; t++) taps[t] = filter[t];
    for (index_t ix = 0; ix < width; ix++) {
        real sum = 0;
% for ky in range(kh):
        {
            const int ty = (int)iy + ${ph} - ${ky * dh};
            if (ty >= 0 && ty % ${sh} == 0 && ty / ${sh} < (int)out_h) {
% for kx in range(kw):
                {
                    const int tx = (int)ix + ${pw} - ${kx * dw};
                    if (tx >= 0 && tx % ${sw} == 0 && tx / ${sw} < (int)out_w)
                        sum += grads[(ty / ${sh}) * (int)out_w + tx / ${sw}] * taps[${ky * kw + kx}];
                }
% endfor
            }
        }
% endfor
        dx_p[dx_off + (size_t)item * width + ix] = sum;
    }
}

// dw[c, tap] (+)= the sum over samples and output pixels of dz * the pixel the tap read; one
// work-item per (channel, tap), and per channel one more for the bias's gradient (sum of dz).
${kernel("depthwise_filter_gradient", "const real *x, const real *dz, real *dw, real *db, index_t has_weights, "
         "index_t has_bias, "
         "index_t accumulate, index_t samples, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= channels * ${kh * kw + 1}) return;
    const index_t c = item / ${kh * kw + 1}, tap = item % ${kh * kw + 1};
    if (tap == ${kh * kw} ? !has_bias : !has_weights) return;
    const int ky = (int)(tap / ${kw}), kx = (int)(tap % ${kw});
    real sum = 0;
    for (index_t n = 0; n < samples; n++) {
        const size_t plane = (size_t)n * channels + c;
        __global const real *image = x_p + x_off + plane * height * width;
        __global const real *grads = dz_p + dz_off + plane * out_h * out_w;
        if (tap == ${kh * kw}) {
            for (index_t o = 0; o < out_h * out_w; o++) sum += grads[o];
            continue;
        }
        for (index_t oy = 0; oy < out_h; oy++) {
            const int y = (int)(oy * ${sh}) - ${ph} + ky * ${dh};
            if (y < 0 || y >= (int)height) continue;
            for (index_t ox = 0; ox < out_w; ox++) {
                const int xx = (int)(ox * ${sw}) - ${pw} + kx * ${dw};
                if (xx >= 0 && xx < (int)width) sum += grads[oy * out_w + ox] * image[y * (int)width + xx];
            }
        }
    }
    __global real *to = tap == ${kh * kw} ? db_p + db_off + c : dw_p + dw_off + (size_t)c * ${kh * kw} + tap;
    *to = accumulate ? *to + sum : sum;
}
