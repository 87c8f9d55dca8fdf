## pool.cl: max and average pooling over the windows of (samples, channels, height, width)
## images (PyTorch's MaxPool2d and AvgPool2d, ceil_mode off), and the global average.
##
## Params: dtype, and the window: kh, kw (size), sh, sw (stride), ph, pw (padding on each side),
## compiled in (a build per shape of window; the loops unroll and, without padding, lose their
## bounds checks). Window (oy, ox) covers rows oy * sh - ph .. + kh - 1 and columns ox * sw - pw ..
## + kw - 1; the padding is never chosen by max (PyTorch pads with -inf) and counts in the
## average's divisor when count_include_pad (then always kh * kw).
##   max_forward:   out = the window's max; where = its position (iy * width + ix) in the image
##   avg_forward:   out = the window's sum / its divisor
##   max_backward, avg_backward: dx from dy. Windows that do not overlap (stride >= size) send
##                  their gradient to their pixels (`scatter`, after dx is zeroed: no pixel is
##                  written twice); overlapping ones are gathered: each pixel sums what the windows
##                  holding it send back, so no two work-items write one element either.
##   global_avg_forward / _backward: the mean of each (sample, channel) plane, and its gradient
<%include file="common.cl"/>
<%
    kh, kw, sh, sw, ph, pw = (context.get(n, 1) for n in ("kh", "kw", "sh", "sw", "ph", "pw"))
    ceil = context.get("ceil", False)  # ceil_mode: the last windows may reach past the padding
    padded = ph > 0 or pw > 0 or ceil
    geometry = "index_t planes, index_t height, index_t width, index_t out_h, index_t out_w"
%>
<%def name="window(body)">
    {
    const int y0 = (int)(oy * ${sh}) - ${ph}, x0 = (int)(ox * ${sw}) - ${pw};
% for dy in range(kh):
    % for dx in range(kw):
    {
        const int y = y0 + ${dy}, x = x0 + ${dx};
        % if padded:
        if (y >= 0 && y < (int)height && x >= 0 && x < (int)width) {
        % else:
        {
        % endif
            ${body}
        }
    }
    % endfor
% endfor
    }
</%def>
## The divisor of window (oy, ox): kh * kw with count_include_pad (in ceil_mode, the part of it
## within the padded image, as PyTorch), else the pixels of the image in it.
<%def name="padded_size(oy, ox)">(real)((min((int)(${oy}) * ${sh} - ${ph} + ${kh}, (int)height + ${ph}) - ((int)(${oy}) * ${sh} - ${ph})) * (min((int)(${ox}) * ${sw} - ${pw} + ${kw}, (int)width + ${pw}) - ((int)(${ox}) * ${sw} - ${pw})))</%def>
<%def name="divisor(oy, ox)">(count_pad ? ${padded_size(oy, ox) if ceil else "(real)%d" % (kh * kw)} : (real)((min((int)(${oy}) * ${sh} - ${ph} + ${kh}, (int)height) - max((int)(${oy}) * ${sh} - ${ph}, 0)) * (min((int)(${ox}) * ${sw} - ${pw} + ${kw}, (int)width) - max((int)(${ox}) * ${sw} - ${pw}, 0))))</%def>

// One work-item per output row of a plane (a sample's channel).
${kernel("max_forward", "const real *x, real *out, uint *where, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * out_h) return;
    const index_t plane = item / out_h, oy = item % out_h;
    __global const real *image = x_p + x_off + (size_t)plane * height * width;
    for (index_t ox = 0; ox < out_w; ox++) {
        real best = -INFINITY;
        uint at = 0;
        bool first = true;
${window("""const real v = image[y * (int)width + x];
            // the first NaN wins, as in PyTorch (x != x: NaN; isnan() is a call on PoCL, 5x slower)
            if (first || v > best || (v != v && best == best)) {
                best = v;
                at = (uint)(y * (int)width + x);
                first = false;
            }""")}
        const size_t o = (size_t)item * out_w + ox;
        out_p[out_off + o] = best;
        where_p[where_off + o] = at;
    }
}

${kernel("avg_forward", "const real *x, real *out, index_t count_pad, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * out_h) return;
    const index_t plane = item / out_h, oy = item % out_h;
    __global const real *image = x_p + x_off + (size_t)plane * height * width;
    for (index_t ox = 0; ox < out_w; ox++) {
        real sum = 0;
${window("sum += image[y * (int)width + x];")}
        out_p[out_off + (size_t)item * out_w + ox] = sum / ${divisor("oy", "ox")};
    }
}

% if sh >= kh and sw >= kw:
// Windows apart: one work-item per output row sends each window's gradient to its pixels.
${kernel("max_backward", "const real *dy, const uint *where, real *dx, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * out_h) return;
    const index_t plane = item / out_h;
    __global real *image = dx_p + dx_off + (size_t)plane * height * width;
    for (index_t ox = 0; ox < out_w; ox++) {
        const size_t o = (size_t)item * out_w + ox;
        image[where_p[where_off + o]] = dy_p[dy_off + o];
    }
}

${kernel("avg_backward", "const real *dy, real *dx, index_t count_pad, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * out_h) return;
    const index_t plane = item / out_h, oy = item % out_h;
    __global real *image = dx_p + dx_off + (size_t)plane * height * width;
    for (index_t ox = 0; ox < out_w; ox++) {
        const real share = dy_p[dy_off + (size_t)item * out_w + ox] / ${divisor("oy", "ox")};
${window("image[y * (int)width + x] = share;")}
    }
}
% else:
## The windows that hold pixel (iy, ix): oy from ceil((iy + ph - kh + 1) / sh) to (iy + ph) / sh.
<%def name="windows_of(body)">
    const int ty = (int)iy + ${ph}, tx = (int)ix + ${pw};
    const int oy_from = ty >= ${kh} ? (ty - ${kh}) / ${sh} + 1 : 0, oy_to = min(ty / ${sh}, (int)out_h - 1);
    const int ox_from = tx >= ${kw} ? (tx - ${kw}) / ${sw} + 1 : 0, ox_to = min(tx / ${sw}, (int)out_w - 1);
    for (int oy = oy_from; oy <= oy_to; oy++)
        for (int ox = ox_from; ox <= ox_to; ox++) {
            ${body}
        }
</%def>
// Windows that overlap: one work-item per input row of a plane gathers.
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

${kernel("avg_backward", "const real *dy, real *dx, index_t count_pad, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * height) return;
    const index_t plane = item / height, iy = item % height;
    const size_t outputs = (size_t)plane * out_h * out_w;
    for (index_t ix = 0; ix < width; ix++) {
        real sum = 0;
${windows_of("sum += dy_p[dy_off + outputs + (size_t)oy * out_w + ox] / " + capture(divisor, "oy", "ox") + ";")}
        dx_p[dx_off + (size_t)item * width + ix] = sum;
    }
}
% endif

// PyTorch's adaptive average: one work-item per output row of a plane.
${kernel("adaptive_avg_forward", "const real *x, real *out, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * out_h) return;
    const index_t plane = item / out_h, oy = item % out_h;
    __global const real *image = x_p + x_off + (size_t)plane * height * width;
    const index_t y0 = oy * height / out_h, y1 = ((oy + 1) * height + out_h - 1) / out_h;
    for (index_t ox = 0; ox < out_w; ox++) {
        const index_t x0 = ox * width / out_w, x1 = ((ox + 1) * width + out_w - 1) / out_w;
        real sum = 0;
        for (index_t y = y0; y < y1; y++)
            for (index_t x = x0; x < x1; x++) sum += image[y * width + x];
        out_p[out_off + (size_t)item * out_w + ox] = sum / (real)((y1 - y0) * (x1 - x0));
    }
}

// Its gradient, gathered: one work-item per input row of a plane sums the windows holding each pixel
// (oy from floor(iy out_h / height) to ceil((iy + 1) out_h / height) - 1; the same across).
${kernel("adaptive_avg_backward", "const real *dy, real *dx, " + geometry)} {
    const index_t item = get_global_id(0);
    if (item >= planes * height) return;
    const index_t plane = item / height, iy = item % height;
    __global const real *grads = dy_p + dy_off + (size_t)plane * out_h * out_w;
    const index_t oy_from = iy * out_h / height, oy_to = min(((iy + 1) * out_h + height - 1) / height, out_h);
    for (index_t ix = 0; ix < width; ix++) {
        const index_t ox_from = ix * out_w / width, ox_to = min(((ix + 1) * out_w + width - 1) / width, out_w);
        real sum = 0;
        for (index_t oy = oy_from; oy < oy_to; oy++) {
            const index_t y0 = oy * height / out_h, y1 = ((oy + 1) * height + out_h - 1) / out_h;
            if (iy < y0 || iy >= y1) continue;
            for (index_t ox = ox_from; ox < ox_to; ox++) {
                const index_t x0 = ox * width / out_w, x1 = ((ox + 1) * width + out_w - 1) / out_w;
                if (ix >= x0 && ix < x1) sum += grads[oy * out_w + ox] / (real)((y1 - y0) * (x1 - x0));
            }
        }
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
