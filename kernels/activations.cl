## activations.cl: every activation and its derivative, generated from the one table below.
##
## Each entry: the activation a = f(z), and its derivative written in terms of a alone, so
## that training can overwrite z with a and still backpropagate (every f here is monotonic, so
## a determines f'). Python reads the names from this table (clnet.activations.ACTIVATIONS).
##
##   forward_<name>(z -> a):        a[i] = f(z[i])           (in place when z is a)
##   backward_<name>(a, g):         g[i] *= f'(a[i])         (dC/da -> dC/dz)
<%!
    ACTIVATIONS = {
        "linear": ("z", "(real)1"),
        # two forms so that exp never overflows: exp(-|z|) <= 1
        "sigmoid": ("z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z))", "a * (1 - a)"),
        "tanh": ("tanh(z)", "1 - a * a"),
        "relu": ("z > 0 ? z : (real)0", "a > 0 ? (real)1 : (real)0"),
        "leaky_relu": ("z > 0 ? z : (real)0.01 * z", "a > 0 ? (real)1 : (real)0.01"),
        "elu": ("z > 0 ? z : expm1(z)", "a > 0 ? (real)1 : a + 1"),
    }
%>
<%include file="common.cl"/>

% for name, (value, slope) in ACTIVATIONS.items():
__kernel void forward_${name}(__global const real *zs, const index_t z_off,
                              __global real *as, const index_t a_off, const index_t n) {
    const index_t i = get_global_id(0);
    if (i >= n) return;
    const real z = zs[z_off + i];
    as[a_off + i] = ${value};
}

__kernel void backward_${name}(__global const real *as, const index_t a_off,
                               __global real *gs, const index_t g_off, const index_t n) {
    const index_t i = get_global_id(0);
    if (i >= n) return;
    const real a = as[a_off + i];
    gs[g_off + i] *= ${slope};
}

% endfor
