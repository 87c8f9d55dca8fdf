## activations.cl: every activation and its derivative, generated from the one table below.
##
## Each entry: the activation a = f(z), and its derivative written in terms of a alone, so
## that training can overwrite z with a and still backpropagate (every f here is monotonic, so
## a determines f'). Python reads the names from this table (clnet.activations.ACTIVATIONS).
## The kernels work on vectors of elements (kernels/vectors.cl), and so do the formulas.
##
##   forward_<name>(z -> a):        a[i] = f(z[i])           (in place when z is a)
##   backward_<name>(a, g):         g[i] *= f'(a[i])         (dC/da -> dC/dz)
##
## softmax, at the end, works on rows: a = exp(z - max z) / sum(exp(z - max z)), one work-item
## per row, and its backward pass is the Jacobian's product g = a * (g - sum(g * a)).
<%!
    # z and a are vectors (kernels/vectors.cl): select(x, y, c) is c ? y : x per lane;
    # ZERO and ONE are vectors of the kernel's type.
    ACTIVATIONS = {
        "linear": ("z", "ONE"),
        # exp(-|z|) <= 1: never overflows, on either side
        "sigmoid": ("select(exp(-fabs(z)) / (1 + exp(-fabs(z))), 1 / (1 + exp(-fabs(z))), z >= 0)", "a * (1 - a)"),
        "tanh": ("tanh(z)", "1 - a * a"),
        "relu": ("select(z, ZERO, z < 0)", "select(ZERO, ONE, a > 0)"),  # NaN stays NaN, as in numpy
        "leaky_relu": ("select((real)0.01 * z, z, z > 0)", "select(ONE * (real)0.01, ONE, a > 0)"),
        "elu": ("select(expm1(z), z, z > 0)", "select(a + 1, ONE, a > 0)"),
    }
%>
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>
<%
    width = v.attr.vector_width(dtype)
    vec = "real%d" % width
%>
#define ZERO ((${vec})(0))
#define ONE ((${vec})(1))

% for name, (value, slope) in ACTIVATIONS.items():
${kernel("forward_" + name, "const real *z, real *a, index_t n")} {
<%v:elementwise n="n" inputs="${['z']}" outputs="${['a']}">a = ${value};</%v:elementwise>
}

${kernel("backward_" + name, "const real *a, real *g, index_t n")} {
<%v:elementwise n="n" inputs="${['a', 'g']}" outputs="${['g']}">g *= ${slope};</%v:elementwise>
}

// The backward pass and the bias gradient in one read of g: g[r, c] *= f'(a[r, c]), then
// db[c] = sum over r of g[r, c]. One work-item per vector of adjacent columns.
${kernel("backward_bias_" + name, "const real *a, real *g, real *db, index_t rows, index_t cols")} {
    const index_t c = get_global_id(0) * ${width};
    if (c >= cols) return;
    ${vec} sum = 0;
    if (c + ${width} <= cols) {
        for (index_t r = 0; r < rows; r++) {
            const size_t at = (size_t)r * cols + c;
            const ${vec} a = vload${width}(0, a_p + a_off + at);
            ${vec} g = vload${width}(0, g_p + g_off + at);
            g *= ${slope};
            vstore${width}(g, 0, g_p + g_off + at);
            sum += g;
        }
        vstore${width}(sum, 0, db_p + db_off + c);
    } else {  // the last columns, fewer than a vector: lanes past cols are zeros and not stored
        for (index_t r = 0; r < rows; r++) {
            const size_t at = (size_t)r * cols + c;
            const ${vec} a = (${vec})(${", ".join("c + %d < cols ? a_p[a_off + at + %d] : 0" % (q, q) for q in range(width))});
            ${vec} g = (${vec})(${", ".join("c + %d < cols ? g_p[g_off + at + %d] : 0" % (q, q) for q in range(width))});
            g *= ${slope};
% for q in range(width):
            if (c + ${q} < cols) g_p[g_off + at + ${q}] = g.s${q};
% endfor
            sum += g;
        }
% for q in range(width):
        if (c + ${q} < cols) db_p[db_off + c + ${q}] = sum.s${q};
% endfor
    }
}

% endfor
// Softmax of each row of a (rows, cols) z; the max is subtracted first, so exp never overflows.
${kernel("forward_softmax", "const real *z, real *a, index_t rows, index_t cols")} {
    const index_t r = get_global_id(0);
    if (r >= rows) return;
    __global const real *z = z_p + z_off + (size_t)r * cols;
    __global real *a = a_p + a_off + (size_t)r * cols;
    real top = z[0];
    for (index_t j = 1; j < cols; j++) top = fmax(top, z[j]);
    real sum = 0;
    for (index_t j = 0; j < cols; j++) {
        const real e = exp(z[j] - top);  // read before write: in place works
        a[j] = e;
        sum += e;
    }
    const real scale = 1 / sum;
    for (index_t j = 0; j < cols; j++) a[j] *= scale;
}

// dC/dz of a softmax row from dC/da: g_j = a_j (g_j - sum_k g_k a_k).
${kernel("backward_softmax", "const real *a, real *g, index_t rows, index_t cols")} {
    const index_t r = get_global_id(0);
    if (r >= rows) return;
    __global const real *a = a_p + a_off + (size_t)r * cols;
    __global real *g = g_p + g_off + (size_t)r * cols;
    real dot = 0;
    for (index_t j = 0; j < cols; j++) dot += g[j] * a[j];
    for (index_t j = 0; j < cols; j++) g[j] = a[j] * (g[j] - dot);
}
