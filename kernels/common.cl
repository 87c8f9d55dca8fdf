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
