## pool.cl: max and average pooling over the windows of (samples, channels, height, width)
## images (PyTorch's MaxPool2d and AvgPool2d, ceil_mode off), and the global average.
##
## Window (oy, ox) covers rows oy * sh - ph .. + kh - 1 and columns ox * sw - pw .. + kw - 1; the
## padding is never chosen by max (PyTorch pads with -inf) and counts in the average's divisor
## when count_include_pad (then always kh * kw). The backward passes are gathers: each input
## pixel sums what the windows holding it send back, so no two work-items write one element.
##   max_forward:   out = the window's max; where = its position (iy * width + ix) in the image
##   max_backward:  dx[p] = the sum of dy over the windows whose `where` is p
##   avg_forward:   out = the window's sum / its divisor;  avg_backward: dx = sum of dy / divisor
##   global_avg_forward / _backward: the mean of each (sample, channel) plane, and its gradient
<%include file="common.cl"/>
<%
    geometry = ("index_t planes, index_t height, index_t width, index_t kh, index_t kw, index_t sh, index_t sw, "
                "index_t ph, index_t pw, index_t out_h, index_t out_w")
%>
<%def name="window_rows()">
    const int y0 = (int)(oy * sh) - (int)ph, x0 = (int)(ox * sw) - (int)pw;
    const int y_from = max(y0, 0), y_to = min(y0 + (int)kh, (int)height);
    const int x_from = max(x0, 0), x_to = min(x0 + (int)kw, (int)width);
</%def>
## The windows that hold pixel (iy, ix): oy from ceil((iy + ph - kh + 1) / sh) to (iy + ph) / sh.
<%def name="windows_of(body)">
    const int ty = (int)(iy + ph), tx = (int)(ix + pw);
    const int oy_from = ty >= (int)kh ? (ty - (int)kh) / (int)sh + 1 : 0;
    const int oy_to = min(ty / (int)sh, (int)out_h - 1);
    const int ox_from = tx >= (int)kw ? (tx - (int)kw) / (int)sw + 1 : 0;
    const int ox_to = min(tx / (int)sw, (int)out_w - 1);
    for (int oy = oy_from; oy <= oy_to; oy++)
        for (int ox = ox_from; ox <= ox_to; ox++) {
            ${body}
        }
</%def>

// One work-item per output row of a plane (a sample's channel).
${kernel("max_forward", "const real *x, real *out, uint *where, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * out_h) return;
    const index_t plane = item / out_h, oy = item % out_h;
    __global const real *image = x_p + x_off + (size_t)plane * height * width;
    for (index_t ox = 0; ox < out_w; ox++) {
${window_rows()}
        real best = -INFINITY;
        uint at = (uint)(y_from * (int)width + x_from);
        for (int y = y_from; y < y_to; y++)
            for (int x = x_from; x < x_to; x++) {
                const real v = image[y * width + x];
                if (v > best || (isnan(v) && !isnan(best))) {  // the first NaN wins, as in PyTorch
                    best = v;
                    at = (uint)(y * (int)width + x);
                }
            }
        const size_t o = (size_t)item * out_w + ox;
        out_p[out_off + o] = best;
        where_p[where_off + o] = at;
    }
}

// One work-item per input row of a plane.
${kernel("max_backward", "const real *dy, const uint *where, real *dx, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * height) return;
    const index_t plane = item / height, iy = item % height;
    const size_t outputs = (size_t)plane * out_h * out_w;
    for (index_t ix = 0; ix < width; ix++) {
        real sum = 0;
        const uint me = (uint)(iy * width + ix);
${windows_of("""const size_t o = outputs + (size_t)oy * out_w + ox;
            if (where_p[where_off + o] == me) sum += dy_p[dy_off + o];""")}
        dx_p[dx_off + (size_t)item * width + ix] = sum;
    }
}

${kernel("avg_forward", "const real *x, real *out, index_t count_pad, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * out_h) return;
    const index_t plane = item / out_h, oy = item % out_h;
    __global const real *image = x_p + x_off + (size_t)plane * height * width;
    for (index_t ox = 0; ox < out_w; ox++) {
${window_rows()}
        real sum = 0;
        for (int y = y_from; y < y_to; y++)
            for (int x = x_from; x < x_to; x++) sum += image[y * width + x];
        const real divisor = count_pad ? (real)(kh * kw) : (real)((y_to - y_from) * (x_to - x_from));
        out_p[out_off + (size_t)item * out_w + ox] = sum / divisor;
    }
}

${kernel("avg_backward", "const real *dy, real *dx, index_t count_pad, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * height) return;
    const index_t plane = item / height, iy = item % height;
    const size_t outputs = (size_t)plane * out_h * out_w;
    for (index_t ix = 0; ix < width; ix++) {
        real sum = 0;
${windows_of("""real divisor = (real)(kh * kw);
            if (!count_pad) {
                const int y0 = oy * (int)sh - (int)ph, x0 = ox * (int)sw - (int)pw;
                divisor = (real)((min(y0 + (int)kh, (int)height) - max(y0, 0))
                                 * (min(x0 + (int)kw, (int)width) - max(x0, 0)));
            }
            sum += dy_p[dy_off + outputs + (size_t)oy * out_w + ox] / divisor;""")}
        dx_p[dx_off + (size_t)item * width + ix] = sum;
    }
}

// One work-item per plane: out[plane] = the mean of its pixels.
${kernel("global_avg_forward", "const real *x, real *out, index_t planes, index_t pixels")} {
    const index_t plane = get_global_id(0);
    if (plane >= planes) return;
    __global const real *from = x_p + x_off + (size_t)plane * pixels;
    real sum = 0;
    for (index_t i = 0; i < pixels; i++) sum += from[i];
    out_p[out_off + plane] = sum / pixels;
}

${kernel("global_avg_backward", "const real *dy, real *dx, index_t planes, index_t pixels")} {
    const index_t plane = get_global_id(0);
    if (plane >= planes) return;
    const real share = dy_p[dy_off + plane] / pixels;
    __global real *to = dx_p + dx_off + (size_t)plane * pixels;
    for (index_t i = 0; i < pixels; i++) to[i] = share;
}
