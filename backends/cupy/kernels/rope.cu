// Rotary position embedding (refimpl/ops/rope.py apply_rope / rope_terms, spec/rope.md).
// x [rows = lead * T, H, D]; cos, sin [rows, R/2] (the tables given, one row per (lead, t)).
// pairing 0 = "half" (a = j, b = j + R/2), 1 = "interleaved" (a = 2j, b = 2j + 1); dims R..D-1 pass.
// Compute and output in C: float32 for float32 / bf16 storage, float64 for float64 tables.
// mode 0: out = rotated x;  mode 1: out = a-terms (x cos), out2 = b-terms (-x_b sin / x_a sin).
#include "common.h"

#define ROPE(T, C, SUF)                                                                                \
  RI_KERNEL rope_##SUF(const T* x, const T* cs, const T* sn, C* out, C* out2, i64 rows,    \
                       int H, int D, int R, int interleaved, int mode) {                           \
    i64 total = rows * H * D;                                                                       \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total;                            \
         i += (i64)blockDim.x * gridDim.x) {                                                        \
      int c = (int)(i % D);                                                                         \
      i64 row = i / ((i64)H * D);                                                                   \
      i64 base = i - c;                                                                             \
      C xv = ld(x, i);                                                                          \
      if (c >= R) {                                                                                 \
        out[i] = xv;                                                                                \
        if (mode) out2[i] = 0;                                                                   \
        continue;                                                                                   \
      }                                                                                             \
      int j, first;                                                                                 \
      int h2 = R / 2;                                                                               \
      if (interleaved) { j = c / 2; first = (c % 2) == 0; }                                         \
      else { j = c < h2 ? c : c - h2; first = c < h2; }                                             \
      int ca = interleaved ? 2 * j : j, cb = interleaved ? 2 * j + 1 : j + h2;                      \
      C xa = ld(x, base + ca), xb = ld(x, base + cb);                                           \
      C co = ld(cs, row * h2 + j), si = ld(sn, row * h2 + j);                                   \
      C ta, tb;                                                                                 \
      if (first) { ta = xa * co; tb = -(xb * si); }                                                 \
      else { ta = xb * co; tb = xa * si; }                                                          \
      if (mode) { out[i] = ta; out2[i] = tb; }                                                      \
      else out[i] = first ? xa * co - xb * si : xb * co + xa * si;                                  \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(rope_##SUF)

ROPE(float, float, f32)
ROPE(bf16, float, bf16)
// float64 tables (refimpl's default angle dtype): x widened to float64 on the host, float64 compute.
ROPE(double, double, f64)
