## random.cl: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
## SC'11) and the fills built on it: raw 32-bit words, uniform and normal (Box-Muller).
##
## The stream is DESIGN.md's: the number at position i is a pure function of (key, counter, i),
## so any global or local size gives the same result. Block b of a fill is the 128-bit counter
## (b mod 2^32, b >> 32, 0, 0).
##
## Each work-item computes `lanes` consecutive blocks at once, as vectors: c0..c3 hold word
## 0..3 of each block, one block per lane. PoCL does not vectorize scalar code across
## work-items here, so on CPUs explicit vectors are what fill the SIMD units; GPUs take lanes=1.
##
## Params: dtype (float32 | float64); lanes (1, 2, 4, 8, 16); wide_mulhi (True: the high word
## of a 32x32 product from a 64-bit multiply, several times faster than mul_hi on PoCL;
## False: the mul_hi builtin).
<%include file="common.cl"/>
<%
    def vec(base, n=lanes):
        return base if n == 1 else "%s%d" % (base, n)

    def lane(var, l):
        return var if lanes == 1 else "%s.s%x" % (var, l)

    per_block = 4 if dtype == "float32" else 2
    uint_v, real_v = vec("uint"), vec("float" if dtype == "float32" else "double")
%>
// a*b+c must stay two roundings: the uniforms are specified bit for bit.
#pragma OPENCL FP_CONTRACT OFF

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define PER_BLOCK ${per_block}
#define LANES ${lanes}

## hi/lo words of a * m for every lane of a; 64-bit vectors wider than 4 lanes break PoCL's
## ABI on AVX2, so wider vectors are multiplied four lanes at a time.
<%def name="mulhi(a, m)">\
% if not wide_mulhi:
mul_hi(${a}, (${uint_v})(${m}))\
% elif lanes == 1:
(uint)(((ulong)(${a}) * (ulong)(${m})) >> 32)\
% elif lanes <= 4:
convert_${uint_v}((convert_${vec("ulong")}(${a}) * (ulong)(${m})) >> 32)\
% else:
(${uint_v})(${", ".join("convert_uint4((convert_ulong4((%s).s%s) * (ulong)(%s)) >> 32)" % (a, "".join("%x" % (4 * q + i) for i in range(4)), m) for q in range(lanes // 4))})\
% endif
</%def>

// Ten rounds of Philox4x32 on `lanes` counters at once, with key (k0, k1).
inline void philox4x32_10(${uint_v} *w0, ${uint_v} *w1, ${uint_v} *w2, ${uint_v} *w3, uint k0, uint k1) {
    ${uint_v} c0 = *w0, c1 = *w1, c2 = *w2, c3 = *w3;
% for r in range(10):
    {
        const ${uint_v} hi0 = ${mulhi("c0", "PHILOX_M0")}, lo0 = PHILOX_M0 * c0;
        const ${uint_v} hi1 = ${mulhi("c2", "PHILOX_M1")}, lo1 = PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0;  c1 = lo1;  c2 = hi0 ^ c3 ^ k1;  c3 = lo0;
    }
    % if r < 9:
    k0 += PHILOX_W0;  k1 += PHILOX_W1;
    % endif
% endfor
    *w0 = c0;  *w1 = c1;  *w2 = c2;  *w3 = c3;
}

// Words 0..3 of the blocks first, first + 1, ..., one per lane (64-bit block index); the
// counter's words 2 and 3 are c2 and c3 (0 for the fills; a layer and a step for dropout).
inline void block_words(const ulong first, const uint k0, const uint k1, const uint c2, const uint c3,
                        ${uint_v} *w0, ${uint_v} *w1, ${uint_v} *w2, ${uint_v} *w3) {
    const uint low = (uint)first;
% if lanes == 1:
    *w0 = low;
    *w1 = (uint)(first >> 32);
% else:
    *w0 = low + (${uint_v})(${", ".join(str(l) for l in range(lanes))});
    *w1 = (uint)(first >> 32) - as_${uint_v}(*w0 < low);  // carry: a true comparison is -1
% endif
    *w2 = c2;
    *w3 = c3;
    philox4x32_10(w0, w1, w2, w3, k0, k1);
}

## Store PER_BLOCK values per lane, interleaved: element PER_BLOCK * (b0 + l) + j = values[j].s<l>.
## With lanes > 1 the item's PER_BLOCK * LANES elements are regrouped into PER_BLOCK vectors of
## LANES adjacent elements and written through a vector pointer when aligned: PoCL compiles
## vstore as a function call, and eight of them per item cost as much as the generator.
## The last item writes one by one.
<%def name="store(out, b0, n, values, scalar)">    if (PER_BLOCK * (${b0} + LANES) <= ${n}) {
% if lanes == 1:
        vstore${per_block}((${scalar}${per_block})(${", ".join(values)}), ${b0}, ${out});
% else:
    % for q in range(per_block):
        const ${scalar}${lanes} out${q} = (${scalar}${lanes})(${", ".join(lane(values[e % per_block], e // per_block) for e in range(q * lanes, (q + 1) * lanes))});
    % endfor
        __global ${scalar} *to = ${out} + PER_BLOCK * ${b0};
        if ((size_t)to % sizeof(${scalar}${lanes}) == 0) {
    % for q in range(per_block):
            ((__global ${scalar}${lanes} *)to)[${q}] = out${q};
    % endfor
        } else {
    % for q in range(per_block):
            vstore${lanes}(out${q}, ${q}, to);
    % endfor
        }
% endif
    } else {
% for l in range(lanes):
    % for j, v in enumerate(values):
        if (PER_BLOCK * (${b0} + ${l}) + ${j} < ${n}) ${out}[PER_BLOCK * (${b0} + ${l}) + ${j}] = ${lane(v, l)};
    % endfor
% endfor
    }
</%def>

// One Philox block per (counter, key) row: out[i] = philox(counters[i], keys[i]). Not a hot
// path: with lanes > 1 every lane computes the same row.
${kernel("philox_blocks", "const uint *counters, const uint *keys, uint *out, index_t n")} {
    const index_t i = get_global_id(0);
    if (i >= n) return;
    const uint4 c = vload4(i, counters_p + counters_off);
    const uint2 k = vload2(i, keys_p + keys_off);
% if lanes == 1:
    uint w0 = c.s0, w1 = c.s1, w2 = c.s2, w3 = c.s3;
% else:
    ${uint_v} w0 = c.s0, w1 = c.s1, w2 = c.s2, w3 = c.s3;
% endif
    philox4x32_10(&w0, &w1, &w2, &w3, k.s0, k.s1);
    vstore4((uint4)(${lane("w0", 0)}, ${lane("w1", 0)}, ${lane("w2", 0)}, ${lane("w3", 0)}), i, out_p + out_off);
}

% if dtype == "float32":
## Raw words are 4 per block whatever the dtype: they live in the float32 rendering only.
// Raw words: word i of the fill is word i % 4 of block counter + i / 4.
${kernel("fill_raw", "uint *a, index_t n, uint k0, uint k1, ulong counter")} {
    __global uint *out = a_p + a_off;
    const ulong blocks = ((ulong)n + 3) / 4;
    const ulong b0 = (ulong)get_global_id(0) * LANES;
    if (b0 >= blocks) return;
    ${uint_v} w0, w1, w2, w3;
    block_words(counter + b0, k0, k1, 0u, 0u, &w0, &w1, &w2, &w3);
${store("out", "b0", "n", ["w0", "w1", "w2", "w3"], "uint")}
}
% endif

// Uniforms in (0, 1) from the words of `lanes` blocks, per DESIGN.md, each kept below 1: the
// formula rounds to exactly 1 for the largest word (value), which a uniform in (0, 1) must avoid.
% if dtype == "float32":
// float32: ((w >> 8) + 0.5) * 2^-24, one per word.
#define UNIFORM(w) fmin((convert_${real_v}((w) >> 8) + 0.5f) * 0x1p-24f, (${real_v})(0x1.fffffep-1f))
% else:
// float64: ((((hi << 32) | lo) >> 11) + 0.5) * 2^-53 from the word pairs (0, 1) and (2, 3).
#define UNIFORM(hi, lo) fmin((convert_${real_v}(((convert_${vec("ulong")}(hi) << 32) | convert_${vec("ulong")}(lo)) >> 11) + 0.5) * 0x1p-53, (${real_v})(0x1.fffffffffffffp-1))
% endif

<%def name="uniforms()">\
    ${uint_v} w0, w1, w2, w3;
    block_words(counter + b0, k0, k1, 0u, 0u, &w0, &w1, &w2, &w3);
% if dtype == "float32":
    const ${real_v} u0 = UNIFORM(w0), u1 = UNIFORM(w1), u2 = UNIFORM(w2), u3 = UNIFORM(w3);
% else:
    const ${real_v} u0 = UNIFORM(w0, w1), u1 = UNIFORM(w2, w3);
% endif
</%def>

// Uniform in (low, low + span): element i from block counter + i / PER_BLOCK.
${kernel("fill_uniform", "real *a, index_t n, uint k0, uint k1, ulong counter, real low, real span")} {
    __global real *out = a_p + a_off;
    const ulong blocks = ((ulong)n + PER_BLOCK - 1) / PER_BLOCK;
    const ulong b0 = (ulong)get_global_id(0) * LANES;
    if (b0 >= blocks) return;
${uniforms()}
% if dtype == "float32":
    const ${real_v} v0 = low + span * u0, v1 = low + span * u1, v2 = low + span * u2, v3 = low + span * u3;
${store("out", "b0", "n", ["v0", "v1", "v2", "v3"], "real")}
% else:
    const ${real_v} v0 = low + span * u0, v1 = low + span * u1;
${store("out", "b0", "n", ["v0", "v1"], "real")}
% endif
}

// Normal with this mean and std: Box-Muller on the uniforms of the same positions, pairs
// (i, i + 1) for even i, both results used: r = sqrt(-2 ln u[i]), angle 2 pi u[i + 1].
// ln, the square root and sin/cos are computed here with additions, subtractions and
// multiplications only (each rounded once: FP_CONTRACT is off), from bit-level first guesses,
// so every conforming device gives the same bits (DESIGN.md, "normal"); the builtins round
// differently from one driver to the next.
<%
    import math, struct

    f32 = dtype == "float32"
    int_v = vec("int" if f32 else "long")
    bits_v = vec("uint" if f32 else "ulong")

    def lit(value):
        if f32:
            return "%sf" % float.hex(struct.unpack("f", struct.pack("f", value))[0])
        return float.hex(value)

    # as many terms as the precision needs: the first left out is below half an ulp
    ln_terms = [2 / (2 * k + 1) for k in range(5 if f32 else 12)]
    sin_terms = [(-1) ** k * (math.pi / 2) ** (2 * k + 1) / math.factorial(2 * k + 1) for k in range(5 if f32 else 9)]
    cos_terms = [(-1) ** (k + 1) * (math.pi / 2) ** (2 * k + 2) / math.factorial(2 * k + 2)
                 for k in range(4 if f32 else 9)]
    if f32:
        ln2_hi = struct.unpack("f", struct.pack("I", 0x3F317200))[0]
    else:
        ln2_hi = struct.unpack("d", struct.pack("Q", 0x3FE62E42FEE00000))[0]
    ln2_lo = math.log(2) - ln2_hi

    def horner(terms, x):
        text = lit(terms[-1])
        for c in reversed(terms[:-1]):
            text = "(%s * %s + %s)" % (text, x, lit(c))
        return text
%>
// ln u for u in (0, 1): u = m 2^e with m in [sqrt(1/2), sqrt(2)) (shifting the bits by the
// distance from 1 to sqrt(1/2) carries into the exponent exactly when the mantissa is at least
// sqrt(2)'s); ln m = s * P(s^2), s = (m - 1) / (m + 1), P the series 2 + 2 s^2 / 3 + 2 s^4 / 5 ...;
// the division by Newton steps on 1 / (2 + f).
inline ${real_v} exact_log(const ${real_v} u) {
% if f32:
    const ${bits_v} b = as_${bits_v}(u) + (0x3F800000u - 0x3F3504F3u);
    const ${real_v} e = convert_${real_v}(convert_${int_v}(b >> 23) - 127);
    const ${real_v} m = as_${real_v}((b & 0x7FFFFFu) + 0x3F3504F3u);
% else:
    const ${bits_v} b = as_${bits_v}(u) + (0x3FF0000000000000ul - 0x3FE6A09E667F3BCDul);
    const ${real_v} e = convert_${real_v}(convert_${int_v}(b >> 52) - 1023);
    const ${real_v} m = as_${real_v}((b & 0xFFFFFFFFFFFFFul) + 0x3FE6A09E667F3BCDul);
% endif
    const ${real_v} f = m - ${lit(1.0)};
    const ${real_v} d = ${lit(2.0)} + f;
% if f32:
    ${real_v} y = as_${real_v}(0x7EF311C7u - as_${bits_v}(d));
% else:
    ${real_v} y = as_${real_v}(0x7FDE623822FC16E6ul - as_${bits_v}(d));
% endif
% for _ in range(3 if f32 else 4):
    y = y * (${lit(2.0)} - d * y);
% endfor
    const ${real_v} s = f * y;
    const ${real_v} s2 = s * s;
    const ${real_v} ln_m = s * ${horner(ln_terms, "s2")};
    return e * ${lit(ln2_hi)} + (e * ${lit(ln2_lo)} + ln_m);
}

// sqrt(x) for x > 0: correctly rounded in double precision (OpenCL's double sqrt is); in single
// precision 1 / sqrt(x) by three Newton steps from the bit-level guess (relative error 3.4e-2,
// then 1.7e-3, 4.5e-6 and 3e-11), times x.
inline ${real_v} exact_sqrt(const ${real_v} x) {
% if f32:
    ${real_v} y = as_${real_v}(0x5F3759DFu - (as_${bits_v}(x) >> 1));
    const ${real_v} h = ${lit(0.5)} * x;
    % for _ in range(3):
    y = y * (${lit(1.5)} - h * y * y);
    % endfor
    return x * y;
% else:
    return sqrt(x);
% endif
}

// sin and cos of 2 pi u for u in (0, 1): 4u = k + f with k = rint(4u) and f in [-1/2, 1/2]
// (both exact), the Taylor polynomials of sin and cos of (pi / 2) f, then quadrant k: odd k
// swaps sin and cos, and sin is negated for k = 2, 3, cos for k = 1, 2 (a flip of the sign bit).
inline ${real_v} exact_sincos(const ${real_v} u, ${real_v} *cos_out) {
    const ${real_v} q = u * ${lit(4.0)};
    const ${real_v} n = rint(q);
    const ${real_v} f = q - n;
    const ${int_v} k = convert_${int_v}(n);
    const ${real_v} f2 = f * f;
    const ${real_v} sn = f * ${horner(sin_terms, "f2")};
    const ${real_v} cs = ${horner(cos_terms, "f2")} * f2 + ${lit(1.0)};
    const ${int_v} swap = -(k & 1);  // all bits set where k is odd, as select wants for vectors
    const ${bits_v} sign_sin = as_${bits_v}((k & 2) << ${30 if f32 else 62});
    const ${bits_v} sign_cos = as_${bits_v}(((k + 1) & 2) << ${30 if f32 else 62});
    *cos_out = as_${real_v}(as_${bits_v}(select(cs, sn, swap)) ^ sign_cos);
    return as_${real_v}(as_${bits_v}(select(sn, cs, swap)) ^ sign_sin);
}

${kernel("fill_normal", "real *a, index_t n, uint k0, uint k1, ulong counter, real mean, real std")} {
    __global real *out = a_p + a_off;
    const ulong blocks = ((ulong)n + PER_BLOCK - 1) / PER_BLOCK;
    const ulong b0 = (ulong)get_global_id(0) * LANES;
    if (b0 >= blocks) return;
${uniforms()}
    const ${real_v} r01 = exact_sqrt((real)-2 * exact_log(u0));
    ${real_v} c01;
    const ${real_v} s01 = exact_sincos(u1, &c01);
    const ${real_v} z0 = mean + std * (r01 * c01), z1 = mean + std * (r01 * s01);
% if dtype == "float32":
    const ${real_v} r23 = exact_sqrt((real)-2 * exact_log(u2));
    ${real_v} c23;
    const ${real_v} s23 = exact_sincos(u3, &c23);
    const ${real_v} z2 = mean + std * (r23 * c23), z3 = mean + std * (r23 * s23);
${store("out", "b0", "n", ["z0", "z1", "z2", "z3"], "real")}
% else:
${store("out", "b0", "n", ["z0", "z1"], "real")}
% endif
}

// Inverted dropout, dst = src * keep / (1 - rate) elementwise (in place when src is dst): element
// e of the arrays is element g = first + e of the mask (first: where they start in the whole
// batch, on MPI ranks), dropped when (w >> 8) < threshold, w = word g % 4 of the block with
// counter (g / 4 low, g / 4 high, layer, step) under key (k0, k1), threshold = round(rate * 2^24).
// The mask is a pure function of (key, layer, step, g): the forward and backward passes of a step
// compute the same one without storing it, on any device and any split of the batch.
${kernel("dropout", "const real *src, real *dst, index_t n, ulong first, uint k0, uint k1, uint layer, "
                    "uint step, uint threshold, real scale")} {
    const ulong start = first / 4, blocks = (first + n + 3) / 4 - start;
    const ulong b0 = start + (ulong)get_global_id(0) * LANES;
    if (b0 - start >= blocks) return;
    ${uint_v} w0, w1, w2, w3;
    block_words(b0, k0, k1, layer, step, &w0, &w1, &w2, &w3);
% for l in range(lanes):
    % for j, w in enumerate(["w0", "w1", "w2", "w3"]):
    {
        const ulong g = 4 * (b0 + ${l}) + ${j};
        if (g >= first && g < first + n) {
            const size_t e = g - first;
            dst_p[dst_off + e] = (${lane(w, l)} >> 8) < threshold ? (real)0 : src_p[src_off + e] * scale;
        }
    }
    % endfor
% endfor
}
