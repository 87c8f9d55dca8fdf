## gemm_local.cl: clnet's GEMM for GPUs, C = alpha * op(A) @ op(B) + beta * C (ops/local_gemm.py).
##
## The shape GPUs want, where gemm.cl's register tiles are shaped for CPUs: a work-group computes
## a ${tm} x ${tn} tile of C from tiles of op(A) (${tm} x ${tk}) and op(B) (${tk} x ${tn}) staged
## in local memory, so that each element loaded from global memory serves ${tn} (A) or ${tm} (B)
## multiply-adds: 2 (tm + tn) / (tm tn) elements per flop instead of one or two per flop.
## Neighbouring work-items load neighbouring vectors (vload4, coalesced) in both orientations
## of A and B. Each work-item keeps a ${wm} x ${wn} tile of C in registers: rows ty + r * LY and
## columns tx + c * LX, so that its neighbours read neighbouring words of local memory (no bank
## conflicts) and store neighbouring words of C. The accumulators are named scalars, unrolled by
## the template: no private array, nothing indexed at run time (no scratch memory).
##
## Params: dtype; tm, tn, tk (the work-group's tile and its step over k); wm, wn (a work-item's
## tile); trans_a, trans_b; epilogue (None, or an activation: + bias by column, z kept when
## keep_z, then f, as gemm.cl's fused forward pass; never softmax or log_softmax).
<%include file="common.cl"/>
<%namespace name="act" file="activations.cl"/>
<%
    lx, ly = tn // wn, tm // wm   # the work-group: LX x LY work-items
    items = lx * ly
    assert tm % wm == 0 and tn % wn == 0 and tm % 4 == 0 and tn % 4 == 0 and tk % 4 == 0, (tm, tn, tk, wm, wn)
    vw = 4  # elements per vector load
    vec = ("float%d" if dtype == "float32" else "double%d") % vw
    args = ("index_t m, index_t n, index_t k_count, const real *a, index_t lda, const real *b, index_t ldb, "
            "real *c, index_t ldc, real alpha, real beta")
    if epilogue:
        args += ", const real *bias, real *z" + act.attr.signature_extra(epilogue)
%>
#define LX ${lx}
#define LY ${ly}
#define ITEMS ${items}
#define VW ${vw}
#define TM ${tm}
#define TN ${tn}
#define TK ${tk}
#define AS_STRIDE (TM + 1)  // one word of padding: the loads of a non-transposed A write down columns
#define BS_STRIDE (TN + 1)
// the activations' formulas are written for vectors (kernels/activations.cl): a 2-lane vector
// holds the one value
#define ZERO ((real2)(0))
#define ONE ((real2)(1))

## A tile of OUTER x INNER elements of a row-major matrix (INNER contiguous in global memory, rows
## `ld` apart) from (o0, i0), into local memory at `store` (a format of {o} and {i}): one vloadN
## per vector that lies within the matrix, element by element at its edge.
<%def name="load_tile(src, ld, outer, inner, o0, i0, o_limit, i_limit, store)">
        for (index_t at = tid; at < ${outer} * (${inner} / VW); at += ITEMS) {
            const index_t o = at / (${inner} / VW), v = at % (${inner} / VW) * VW;
            const index_t go = ${o0} + o, gv = ${i0} + v;
            ${vec} x = 0;
            if (go < ${o_limit}) {
                __global const real *p = ${src} + (size_t)go * ${ld} + gv;
                if (gv + VW <= ${i_limit})
                    x = vload${vw}(0, p);
                else
                    x = (${vec})(${", ".join("gv + %d < %s ? p[%d] : 0" % (q, i_limit, q) for q in range(vw))});
            }
% for q in range(vw):
            ${store.format(o="o", i="v + %d" % q)} = x.s${q};
% endfor
        }
</%def>

${kernel("gemm_local", args)} {
    __local real as[TK * AS_STRIDE];  // op(A)'s tile, k by k: as[kk * AS_STRIDE + i]
    __local real bs[TK * BS_STRIDE];  // op(B)'s tile, k by k: bs[kk * BS_STRIDE + j]
    const index_t tx = get_local_id(0), ty = get_local_id(1), tid = ty * LX + tx;
    const index_t i0 = get_group_id(1) * TM, j0 = get_group_id(0) * TN;
    __global const real *a = a_p + a_off;
    __global const real *b = b_p + b_off;
% for r in range(wm):
    real ${", ".join("acc%d_%d = 0" % (r, q) for q in range(wn))};
% endfor
    for (index_t k0 = 0; k0 < k_count; k0 += TK) {
        // each work-item loads vectors of VW elements along the contiguous dimension (vloadN),
        // consecutive work-items consecutive vectors; zeros past the matrices' edges
% if trans_a:
        ${load_tile("a", "lda", "TK", "TM", "k0", "i0", "k_count", "m", "as[({o}) * AS_STRIDE + {i}]")}
% else:
        ${load_tile("a", "lda", "TM", "TK", "i0", "k0", "m", "k_count", "as[({i}) * AS_STRIDE + {o}]")}
% endif
% if trans_b:
        ${load_tile("b", "ldb", "TN", "TK", "j0", "k0", "n", "k_count", "bs[({i}) * BS_STRIDE + {o}]")}
% else:
        ${load_tile("b", "ldb", "TK", "TN", "k0", "j0", "k_count", "n", "bs[({o}) * BS_STRIDE + {i}]")}
% endif
        barrier(CLK_LOCAL_MEM_FENCE);
        for (index_t kk = 0; kk < TK; kk++) {
% for r in range(wm):
            const real x${r} = as[kk * AS_STRIDE + ty + ${r} * LY];
% endfor
% for q in range(wn):
            const real y${q} = bs[kk * BS_STRIDE + tx + ${q} * LX];
% endfor
% for r in range(wm):
            ${" ".join("acc%d_%d = x%d * y%d + acc%d_%d;" % (r, q, r, q, r, q) for q in range(wn))}
% endfor
        }
        barrier(CLK_LOCAL_MEM_FENCE);  // the tiles are read before the next step overwrites them
    }
    // C = alpha * acc + beta * C (C not read when beta is 0: it may hold NaN), or the epilogue
% for q in range(wn):
    const index_t col${q} = j0 + tx + ${q} * LX;
%   if epilogue:
    const real bias${q} = col${q} < n ? bias_p[bias_off + col${q}] : 0;
%   endif
% endfor
% for r in range(wm):
    {
        const index_t i = i0 + ty + ${r} * LY;
        if (i < m) {
            __global real *c_row = c_p + c_off + (size_t)i * ldc;
%   for q in range(wn):
            if (col${q} < n) {
                real v = alpha * acc${r}_${q};
%     if epilogue:
                v += bias${q};
%       if keep_z:
                z_p[z_off + (size_t)i * ldc + col${q}] = v;
%       endif
                const real2 z = (real2)(v);
                real2 a;
                a = ${act.attr.ACTIVATIONS[epilogue][0]};
                v = a.s0;
%     else:
                if (beta != 0) v += beta * c_row[col${q}];
%     endif
                c_row[col${q}] = v;
            }
%   endfor
        }
    }
% endfor
}
