## common.cl: included first by every kernel template.
## Defines `real` as the C type of the dtype the template is rendered for (float32 -> float,
## float64 -> double, with cl_khr_fp64 enabled), and `index_t` for element counts and offsets.
% if dtype == "float64":
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
% elif dtype == "float32":
typedef float real;
% else:
<% raise ValueError("common.cl: dtype must be 'float32' or 'float64', got %r" % (dtype,)) %>
% endif
typedef uint index_t;
