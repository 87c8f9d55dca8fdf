## upsample.cl: PyTorch's nn.Upsample(scale_factor=(sh, sw), mode) on (samples, channels, height,
## width) images, for whole scale factors; out is (height * sh, width * sw).
##
##   nearest:   out[oy, ox] = x[oy / sh, ox / sw]
##   bilinear:  align_corners=False: the source row of oy is s = max((oy + 0.5) / sh - 0.5, 0),
##              between rows y0 = floor(s) and y1 = min(y0 + 1, height - 1) with weight s - y0 on
##              y1 (the same for columns), so the borders repeat the edge pixels
##
## The backward passes gather: each input pixel sums the gradients of the outputs that read it
## (a window of 3 sh x 3 sw outputs at most holds them all), weighted as the forward pass
## weighted it, so no two work-items write one element and dx needs no zeroing.
## Params: dtype, mode ("nearest" or "bilinear"); sh, sw as arguments.
<%include file="common.cl"/>
<% bilinear = context.get("mode") == "bilinear" %>
<%def name="source(o, s, n, name)">
    ## the rows (or columns) an output reads, and the weight of the second
    real ${name}_s = max(((real)${o} + (real)0.5) / ${s} - (real)0.5, (real)0);
    const int ${name}0 = (int)${name}_s;
    const int ${name}1 = min(${name}0 + 1, (int)${n} - 1);
    const real ${name}_w = ${name}_s - ${name}0;
</%def>

${kernel("upsample_forward", "const real *x, real *out, index_t planes, index_t height, index_t width, "
                             "index_t sh, index_t sw")} {
    const index_t out_w = width * sw, out_h = height * sh;
    const size_t i = get_global_id(0);
    if (i >= (size_t)planes * out_h * out_w) return;
    const index_t ox = i % out_w, oy = (i / out_w) % out_h;
    __global const real *plane = x_p + x_off + (i / ((size_t)out_w * out_h)) * height * width;
% if bilinear:
${source("oy", "sh", "height", "y")}
${source("ox", "sw", "width", "x")}
    out_p[out_off + i] = (1 - y_w) * ((1 - x_w) * plane[y0 * width + x0] + x_w * plane[y0 * width + x1])
                       + y_w * ((1 - x_w) * plane[y1 * width + x0] + x_w * plane[y1 * width + x1]);
% else:
    out_p[out_off + i] = plane[(oy / sh) * width + ox / sw];
% endif
}

${kernel("upsample_backward", "const real *dy, real *dx, index_t planes, index_t height, index_t width, "
                              "index_t sh, index_t sw")} {
    const index_t out_w = width * sw, out_h = height * sh;
    const size_t i = get_global_id(0);
    if (i >= (size_t)planes * height * width) return;
    const int ix = i % width, iy = (i / width) % height;
    __global const real *grads = dy_p + dy_off + (i / ((size_t)width * height)) * out_h * out_w;
    real sum = 0;
% if bilinear:
    const int first_y = max(0, (iy - 1) * (int)sh), last_y = min((int)out_h, (iy + 2) * (int)sh);
    const int first_x = max(0, (ix - 1) * (int)sw), last_x = min((int)out_w, (ix + 2) * (int)sw);
    for (int oy = first_y; oy < last_y; oy++) {
${source("oy", "sh", "height", "y")}
        const real wy = (y0 == iy ? 1 - y_w : 0) + (y1 == iy ? y_w : 0);
        if (wy == 0) continue;
        real row = 0;
        for (int ox = first_x; ox < last_x; ox++) {
${source("ox", "sw", "width", "x")}
            row += ((x0 == ix ? 1 - x_w : 0) + (x1 == ix ? x_w : 0)) * grads[(size_t)oy * out_w + ox];
        }
        sum += wy * row;
    }
% else:
    for (index_t oy = iy * sh; oy < (iy + 1) * sh; oy++)
        for (index_t ox = ix * sw; ox < (ix + 1) * sw; ox++) sum += grads[(size_t)oy * out_w + ox];
% endif
    dx_p[dx_off + i] = sum;
}
