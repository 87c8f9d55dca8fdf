## activations.cl: every activation and its derivative, generated from the one table below.
##
## Each entry: the activation a = f(z); its derivative, written in terms of a (so that training
## can overwrite z with a and still backpropagate: those f are monotonic, a determines f') or
## of z (gelu, silu: not monotonic, so the layer keeps z); which of the two it reads; and the
## default of its parameter `act_alpha` (None: it has none). A parametrized activation's kernels
## take act_alpha as an argument, so every alpha runs on the same build. Python reads the names,
## what each derivative reads and the defaults from this table (clnet.ops.activations).
## The kernels work on vectors of elements (kernels/vectors.cl), and so do the formulas.
##
##   forward_<name>(z -> a):        a[i] = f(z[i])           (in place when z is a)
##   backward_<name>(a or z, g):    g[i] *= f'(a[i] or z[i]) (dC/da -> dC/dz)
##
## softmax and log_softmax, at the end, work on rows: a = exp(z - max z) / sum(exp(z - max z)),
## or its logarithm a = z - max z - log(sum(exp(z - max z))), one work-item per row; their
## backward passes are the Jacobians' products g = a * (g - sum(g * a)) and g - exp(a) sum(g).
<%!
    # z and a are vectors (kernels/vectors.cl): select(x, y, c) is c ? y : x per lane;
    # ZERO and ONE are vectors of the kernel's type. The constants are written as literals of
    # the real type: sqrt(1/2), 1/sqrt(2 pi), sqrt(2/pi) and 3 * 0.044715 (PyTorch's values).
    SIGMOID_Z = "(1 / (1 + exp(-z)))"  # exp(-z) = inf gives 0, not NaN
    GELU_TANH_U = "((real)0.7978845608028654 * (z + (real)0.044715 * z * z * z))"
    GELU_TANH_S = "(1 / (1 + exp(-2 * " + GELU_TANH_U + ")))"
    GELU_TANH_T = "(1 / (1 + exp(2 * " + GELU_TANH_U + ")))"
    HARD_SIGMOID_Z = "select(select((z + 3) / 6, ZERO, z <= -3), ONE, z >= 3)"  # NaN stays NaN
    ACTIVATIONS = {
        "linear": ("z", "ONE", "a", None),
        # exp(-|z|) <= 1: never overflows, on either side
        "sigmoid": ("select(exp(-fabs(z)) / (1 + exp(-fabs(z))), 1 / (1 + exp(-fabs(z))), z >= 0)", "a * (1 - a)",
                    "a", None),
        "tanh": ("tanh(z)", "1 - a * a", "a", None),
        "relu": ("select(z, ZERO, z < 0)", "select(ZERO, ONE, a > 0)", "a", None),  # NaN stays NaN, as in numpy
        # min(max(z, 0), 6) (PyTorch's ReLU6, ONNX's Clip(0, 6)); NaN stays NaN
        "relu6": ("select(select(z, ZERO, z < 0), 6 * ONE, z > 6)", "select(ZERO, ONE, (a > 0) & (a < 6))", "a", None),
        # alpha >= 0 (clnet.ops.activations checks it), so a > 0 exactly where z > 0
        "leaky_relu": ("select(act_alpha * z, z, z > 0)", "select(ONE * act_alpha, ONE, a > 0)", "a", 0.01),
        "elu": ("select(act_alpha * expm1(z), z, z > 0)", "select(a + act_alpha, ONE, a > 0)", "a", 1.0),
        # PyTorch's gelu: z * Phi(z), the normal distribution's CDF from erf; f' = Phi(z) + z phi(z)
        # (1 + erf: CLNET_ONE_PLUS_ERF, common.cl)
        "gelu": ("(real)0.5 * z * CLNET_ONE_PLUS_ERF(z * (real)0.7071067811865476)",
                 "(real)0.5 * CLNET_ONE_PLUS_ERF(z * (real)0.7071067811865476)"
                 " + z * exp((real)-0.5 * z * z) * (real)0.3989422804014327", "z", None),
        # gelu(approximate="tanh"): 0.5 z (1 + tanh(u)), u = sqrt(2/pi) (z + 0.044715 z^3), written with
        # 0.5 (1 + tanh(u)) = S = 1 / (1 + exp(-2u)) and 1 - tanh(u)^2 = 4 S T, T = 1 / (1 + exp(2u)), so
        # that both tails are exact: PoCL's float32 tanh, 1 ulp short of -1, gave -3e-6 at z = -100
        "gelu_tanh": ("z * " + GELU_TANH_S, GELU_TANH_S + " + 2 * z * " + GELU_TANH_S + " * " + GELU_TANH_T
                      + " * (real)0.7978845608028654 * (1 + (real)0.134145 * z * z)", "z", None),
        # silu (swish): z * sigmoid(z); f' = s (1 + z (1 - s)), s = sigmoid(z)
        "silu": ("z * " + SIGMOID_Z, SIGMOID_Z + " * (1 + z * (1 - " + SIGMOID_Z + "))", "z", None),
        # PyTorch's hardsigmoid, relu6(z + 3) / 6 (MobileNetV3); f' = 1/6 strictly between the kinks
        "hardsigmoid": (HARD_SIGMOID_Z, "select(ZERO, ONE / 6, (a > 0) & (a < 1))", "a", None),
        # hardswish, z * hardsigmoid(z): not monotonic; PyTorch's f' is z / 3 + 1/2 on [-3, 3]
        "hardswish": ("z * " + HARD_SIGMOID_Z, "select(select(z / 3 + (real)0.5, ZERO, z < -3), ONE, z > 3)", "z",
                      None),
    }

    def signature_extra(name):
        """The activation's parameter as a kernel argument, when it has one."""
        return ", real act_alpha" if name in ACTIVATIONS and ACTIVATIONS[name][3] is not None else ""
%>
<%include file="common.cl"/>
<%namespace name="v" file="vectors.cl"/>
<%
    width = v.attr.vector_width(dtype)
    vec = "real%d" % width
%>
#define ZERO ((${vec})(0))
#define ONE ((${vec})(1))

% for name, (value, slope, reads, _) in ACTIVATIONS.items():
${kernel("forward_" + name, "const real *z, real *a, index_t n" + signature_extra(name))} {
<%v:elementwise n="n" inputs="${['z']}" outputs="${['a']}">a = ${value};</%v:elementwise>
}

${kernel("backward_" + name, "const real *%s, real *g, index_t n%s" % (reads, signature_extra(name)))} {
<%v:elementwise n="n" inputs="${[reads, 'g']}" outputs="${['g']}">g *= ${slope};</%v:elementwise>
}

// The backward pass and the bias gradient in one read of g: g[r, c] *= f'(a or z [r, c]), then
// db[c] = sum over r of g[r, c]. One work-item per vector of adjacent columns.
${kernel("backward_bias_" + name, "const real *%s, real *g, real *db, index_t rows, index_t cols%s" % (reads, signature_extra(name)))} {
    const index_t c = get_global_id(0) * ${width};
    if (c >= cols) return;
    ${vec} sum = 0;
    if (c + ${width} <= cols) {
        for (index_t r = 0; r < rows; r++) {
            const size_t at = (size_t)r * cols + c;
            const ${vec} ${reads} = vload${width}(0, ${reads}_p + ${reads}_off + at);
            ${vec} g = vload${width}(0, g_p + g_off + at);
            g *= ${slope};
            vstore${width}(g, 0, g_p + g_off + at);
            sum += g;
        }
        vstore${width}(sum, 0, db_p + db_off + c);
    } else {  // the last columns, fewer than a vector: lanes past cols are zeros and not stored
        for (index_t r = 0; r < rows; r++) {
            const size_t at = (size_t)r * cols + c;
            const ${vec} ${reads} = (${vec})(${", ".join("c + %d < cols ? %s_p[%s_off + at + %d] : 0" % (q, reads, reads, q) for q in range(width))});
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

// The bias and the activation in one pass after a product another library computed (CLBlast):
// z[r, c] += b[c], then a = f(z), for a (rows, cols) row-major z; z is kept where a is another
// array, and a may be z (then it holds f(z) at the end). Dimension 0: vectors along a row.
${kernel("bias_forward_" + name, "real *z, const real *b, real *a, index_t rows, index_t cols" + signature_extra(name))} {
    const size_t row = get_global_id(1);
<%v:elementwise n="cols" inputs="${['z', 'b']}" outputs="${['z', 'a']}" base="${{'z': 'row * cols', 'a': 'row * cols'}}">z += b;
            a = ${value};</%v:elementwise>
}

% endfor
## The row kernels' start: one work-item per row r; `source` and `target` point at row r.
<%def name="row(source, target)">
    const index_t r = get_global_id(0);
    if (r >= rows) return;
    __global const real *${source} = ${source}_p + ${source}_off + (size_t)r * cols;
    __global real *${target} = ${target}_p + ${target}_off + (size_t)r * cols;
</%def>
// Softmax of each row of a (rows, cols) z; the max is subtracted first, so exp never overflows.
${kernel("forward_softmax", "const real *z, real *a, index_t rows, index_t cols")} {
${row("z", "a")}
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
${row("a", "g")}
    real dot = 0;
    for (index_t j = 0; j < cols; j++) dot += g[j] * a[j];
    for (index_t j = 0; j < cols; j++) g[j] = a[j] * (g[j] - dot);
}

// The logarithm of the softmax of each row, as (z - max) - log(sum(exp(z - max))): exact where
// the softmax itself underflows to 0.
${kernel("forward_log_softmax", "const real *z, real *a, index_t rows, index_t cols")} {
${row("z", "a")}
    real top = z[0];
    for (index_t j = 1; j < cols; j++) top = fmax(top, z[j]);
    real sum = 0;
    for (index_t j = 0; j < cols; j++) sum += exp(z[j] - top);
    const real shift = top + log(sum);
    for (index_t j = 0; j < cols; j++) a[j] = z[j] - shift;
}

// dC/dz of a log_softmax row from dC/da: g_j = g_j - exp(a_j) sum_k g_k.
${kernel("backward_log_softmax", "const real *a, real *g, index_t rows, index_t cols")} {
${row("a", "g")}
    real sum = 0;
    for (index_t j = 0; j < cols; j++) sum += g[j];
    for (index_t j = 0; j < cols; j++) g[j] -= exp(a[j]) * sum;
}
