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

// z = conv(x) (+ bias): one work-item per output row of a plane, adding one filter row at a time
// into the output row (in cache); the columns whose taps all fall inside the image are summed
// without bounds checks (a loop the compiler can vectorize), the few at the edges with them.
## taps: channel c's filter in private memory
<%def name="load_taps()">
    real taps[${kh * kw}];
    for (int t = 0; t < ${kh * kw}; t++) taps[t] = w_p[w_off + (size_t)c * ${kh * kw} + t];
</%def>
<%def name="taps_of_row(ky, checked)">
% for kx in range(kw):
% if checked:
                if (x0 + ${kx * dw} >= 0 && x0 + ${kx * dw} < (int)width) sum += row[x0 + ${kx * dw}] * taps[${ky * kw + kx}];
% else:
                sum += row[x0 + ${kx * dw}] * taps[${ky * kw + kx}];
% endif
% endfor
</%def>
${kernel("depthwise_forward", "const real *x, const real *w, const real *bias, real *z, index_t has_bias, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * out_h) return;
    const index_t plane = item / out_h, oy = item % out_h, c = plane % channels;
    __global const real *image = x_p + x_off + (size_t)plane * height * width;
    __global real *out = z_p + z_off + (size_t)item * out_w;
${load_taps()}
    const real shift = has_bias ? bias_p[bias_off + c] : (real)0;
    for (index_t ox = 0; ox < out_w; ox++) out[ox] = shift;
    // columns ox whose taps are all inside: lo <= ox <= hi
    const int lo = (${pw} + ${sw} - 1) / ${sw}, last = (int)width - 1 + ${pw} - ${(kw - 1) * dw};
    const int hi = min(last < 0 ? -1 : last / ${sw}, (int)out_w - 1);
% for ky in range(kh):
    {
        const int y = (int)(oy * ${sh}) - ${ph} + ${ky * dh};
        if (y >= 0 && y < (int)height) {
            __global const real *row = image + y * (int)width;
            int ox = 0;
            for (; ox < min(lo, (int)out_w); ox++) {
                const int x0 = ox * ${sw} - ${pw};
                real sum = 0;
${taps_of_row(ky, True)}
                out[ox] += sum;
            }
            for (; ox <= hi; ox++) {
                const int x0 = ox * ${sw} - ${pw};
                real sum = 0;
${taps_of_row(ky, False)}
                out[ox] += sum;
            }
            for (; ox < (int)out_w; ox++) {
                const int x0 = ox * ${sw} - ${pw};
                real sum = 0;
${taps_of_row(ky, True)}
                out[ox] += sum;
            }
        }
    }
% endfor
}

// dx = the gradient of the input from dz: one work-item per input row of a plane gathers, for
// each pixel, the outputs whose windows hold it (no pixel written twice).
${kernel("depthwise_input_gradient", "const real *dz, const real *w, real *dx, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * height) return;
    const index_t plane = item / height, iy = item % height, c = plane % channels;
    __global const real *grads = dz_p + dz_off + (size_t)plane * out_h * out_w;
${load_taps()}
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

// dw[c, tap] (+)= the sum over samples and output pixels of dz * the pixel the tap read, and
// db[c] (+)= the sum of dz: one work-item per channel, which reads each of its planes once (a
// work-item per tap read them kh * kw times over), in a fixed order.
${kernel("depthwise_filter_gradient", "const real *x, const real *dz, real *dw, real *db, index_t has_weights, "
         "index_t has_bias, index_t accumulate, index_t samples, " + geometry)} {
    const index_t c = get_global_id(0);
    if (c >= channels) return;
    real sums[${kh * kw}], bias_sum = 0;
    for (int t = 0; t < ${kh * kw}; t++) sums[t] = 0;
    for (index_t n = 0; n < samples; n++) {
        const size_t plane = (size_t)n * channels + c;
        __global const real *image = x_p + x_off + plane * height * width;
        __global const real *grads = dz_p + dz_off + plane * out_h * out_w;
        for (index_t oy = 0; oy < out_h; oy++) {
            __global const real *dy = grads + oy * out_w;
            for (index_t ox = 0; ox < out_w; ox++) bias_sum += dy[ox];
% for ky in range(kh):
            {
                const int y = (int)(oy * ${sh}) - ${ph} + ${ky * dh};
                if (y >= 0 && y < (int)height) {
% for kx in range(kw):
                    {   // the columns whose pixel for this tap is inside the image
                        const int shift = ${kx * dw - pw}, lo = shift >= 0 ? 0 : (-shift + ${sw} - 1) / ${sw};
                        const int hi = min((int)width - 1 - shift < 0 ? -1 : ((int)width - 1 - shift) / ${sw},
                                           (int)out_w - 1);
                        __global const real *from = image + y * (int)width + shift;
                        real sum = 0;
                        for (int ox = lo; ox <= hi; ox++) sum += dy[ox] * from[ox * ${sw}];
                        sums[${ky * kw + kx}] += sum;
                    }
% endfor
                }
            }
% endfor
        }
    }
    if (has_weights) {
        __global real *to = dw_p + dw_off + (size_t)c * ${kh * kw};
        for (int t = 0; t < ${kh * kw}; t++) to[t] = accumulate ? to[t] + sums[t] : sums[t];
    }
    if (has_bias) db_p[db_off + c] = accumulate ? db_p[db_off + c] + bias_sum : bias_sum;
}
