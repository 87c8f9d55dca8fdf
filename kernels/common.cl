## common.cl: included first by every kernel template.
## Defines `real` (and real2, real4, real8) as the C type of the dtype the template is rendered for (float32 -> float,
## float64 -> double, with cl_khr_fp64 enabled), and `index_t` for element counts and offsets.
% if dtype == "float64":
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
typedef double2 real2;
typedef double4 real4;
typedef double8 real8;
% elif dtype == "float32":
typedef float real;
typedef float2 real2;
typedef float4 real4;
typedef float8 real8;
% else:
<% raise ValueError("common.cl: dtype must be 'float32' or 'float64', got %r" % (dtype,)) %>
% endif
typedef uint index_t;
## CLNET_ONE_PLUS_ERF(u) = 1 + erf(u) = erfc(-u), for any real vector type: in float32 from
## erfc's Chebyshev fit (Numerical Recipes' erfcc: t exp(-a^2 + P(t)), t = 1 / (1 + a / 2), within
## 1.2e-7 of erfc relatively, for a = |u|; 2 - that for the other sign), an exp where PoCL's erf
## runs lane by lane (gelu forward 2.2 ms against 0.4 on 2048 x 512, 2 cores), and exact in
## relative terms in gelu's negative tail, where 1 + erf(u) cancels; float64 keeps the library's
## erf, as PyTorch computes it (the tests compare with PyTorch to 1e-10 there).
% if dtype == "float32":
#define CLNET_ERFC_T(a) (1.0f / (1.0f + 0.5f * (a)))
#define CLNET_ERFC_P(t) (-1.26551223f + (t) * (1.00002368f + (t) * (0.37409196f + (t) * (0.09678418f + (t) * ( \
    -0.18628806f + (t) * (0.27886807f + (t) * (-1.13520398f + (t) * (1.48851587f + (t) * (-0.82215223f \
    + (t) * 0.17087277f)))))))))
#define CLNET_ERFC_ABS(a) (CLNET_ERFC_T(a) * exp(-(a) * (a) + CLNET_ERFC_P(CLNET_ERFC_T(a))))
#define CLNET_ONE_PLUS_ERF(u) select(2.0f - CLNET_ERFC_ABS(fabs(u)), CLNET_ERFC_ABS(fabs(u)), (u) <= 0.0f)
% else:
#define CLNET_ONE_PLUS_ERF(u) (1 + erf(u))
% endif
