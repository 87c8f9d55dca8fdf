## vectors.cl: no kernels; the Mako def `elementwise` that clnet's elementwise kernels are
## written with, and the vector width they use.
##
## PoCL runs each work-item's code as written here (it does not vectorize across work-items), so
## each work-item takes `width` adjacent elements as one 256-bit vector: float8 or double4.
## tanh on 256 x 512 floats took 1.05 ms one element per work-item, 0.27 ms as float8; a copy
## went from 7.6 to 31 GB/s. The last work-item, with fewer elements left, works on a
## zero-padded private copy, so the body is written once, for vectors.
##
## Usage, in a template that has <%namespace name="v" file="vectors.cl"/>:
##     ${kernel("k", "const real *x, real *y, index_t n")} {
##     <%v:elementwise n="n" inputs="${['x']}" outputs="${['y']}">  y = 2 * x;  </%v:elementwise>
##     }
## Each name stands for a vector of the elements of array <name>_p from <name>_off + base[name]
## + the work-item's first element (base: expressions by name, 0 for the names not in it).
<%!
    def vector_width(dtype):
        """Elements per work-item: 256 bits (wider vectors break PoCL's builtin calls on AVX2)."""
        return 8 if dtype == "float32" else 4
%>
<%def name="elementwise(n, inputs, outputs, base=None)">
<%
    width = vector_width(dtype)
    vec = "real%d" % width
    names = list(dict.fromkeys(list(inputs) + list(outputs)))
    start = {x: "%s_off + %s + first_" % (x, (base or {}).get(x, "0")) for x in names}
%>
    {
    const index_t first_ = get_global_id(0) * ${width};
    if (first_ < ${n}) {
        ${vec} ${", ".join(names)};
        if (first_ + ${width} <= ${n}) {
% for x in inputs:
            ${x} = vload${width}(0, ${x}_p + ${start[x]});
% endfor
            ${caller.body()}
% for x in outputs:
            vstore${width}(${x}, 0, ${x}_p + ${start[x]});
% endfor
        } else {
            real tail_[${width}];
% for x in inputs:
            for (index_t j_ = 0; j_ < ${width}; j_++)
                tail_[j_] = first_ + j_ < ${n} ? ${x}_p[${start[x]} + j_] : (real)0;
            ${x} = vload${width}(0, tail_);
% endfor
            ${caller.body()}
% for x in outputs:
            vstore${width}(${x}, 0, tail_);
            for (index_t j_ = 0; first_ + j_ < ${n}; j_++) ${x}_p[${start[x]} + j_] = tail_[j_];
% endfor
        }
    }
    }
</%def>
