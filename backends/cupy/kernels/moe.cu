// Mixture-of-experts routing and combination (refimpl/ops/moe.py, spec/moe.md).
//   router_*: one thread per token row. The j-th pick is the largest (logit, lower index first)
//     pair that comes after the (j-1)-th in that order: O(k E) per row, no scratch memory, and the
//     reference's tie rule (lower expert index first among equal logits).
//     topk_softmax (gpt-oss): softmax over the k picked logits.  softmax_topk (Mixtral): softmax over
//     all E, the picked probabilities, renormalised to sum 1 when renorm != 0.
//   moe_combine_*: out[n, :] = sum_j w[n, j] ys[n, j, :], slot order j = 0..k-1 from zero.
#include "common.h"

// (a, ia) comes before (b, ib): larger logit first, lower index first among equal logits.
RI_DEV bool before(float a, int ia, float b, int ib) { return a > b || (a == b && ia < ib); }

#define ROUTER(T, SUF)                                                                              \
  RI_KERNEL router_##SUF(const T* logits, float* w, i64* idx, i64 rows, int E, int k, int mode,    \
                         int renorm) {                                                              \
    for (i64 r = (i64)blockIdx.x * blockDim.x + threadIdx.x; r < rows;                             \
         r += (i64)blockDim.x * gridDim.x) {                                                        \
      const T* l = logits + r * E;                                                                  \
      float pv = 0.0f;                                                                              \
      int pi = -1;                                                                                  \
      for (int j = 0; j < k; ++j) {                                                                 \
        int best = -1;                                                                              \
        float bv = 0.0f;                                                                            \
        for (int e = 0; e < E; ++e) {                                                               \
          float v = ld(l, e);                                                                       \
          if (pi >= 0 && !before(pv, pi, v, e)) continue; /* not after the previous pick */         \
          if (best < 0 || before(v, e, bv, best)) { best = e; bv = v; }                             \
        }                                                                                           \
        idx[r * k + j] = best;                                                                      \
        w[r * k + j] = bv;                                                                          \
        pv = bv;                                                                                    \
        pi = best;                                                                                  \
      }                                                                                             \
      float* wr = w + r * k;                                                                        \
      if (mode == 0) { /* softmax over the k picked logits; wr[0] is their max */                   \
        float m = wr[0], s = 0.0f;                                                                  \
        for (int j = 0; j < k; ++j) { wr[j] = expf(wr[j] - m); s += wr[j]; }                        \
        for (int j = 0; j < k; ++j) wr[j] = wr[j] / s;                                              \
      } else { /* softmax over all E, then the picked entries */                                    \
        float m = wr[0], s = 0.0f;                                                                  \
        for (int e = 0; e < E; ++e) s += expf(ld(l, e) - m);                                        \
        float t = 0.0f;                                                                             \
        for (int j = 0; j < k; ++j) { wr[j] = expf(wr[j] - m) / s; t += wr[j]; }                    \
        if (renorm)                                                                                 \
          for (int j = 0; j < k; ++j) wr[j] = wr[j] / t;                                            \
      }                                                                                             \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(router_##SUF)                                                                          \
  RI_KERNEL moe_combine_##SUF(const float* ys, const T* w, float* out, i64 n, int k, int d) {      \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n * d;                            \
         i += (i64)blockDim.x * gridDim.x) {                                                        \
      i64 t = i / d;                                                                                \
      int c = (int)(i - t * d);                                                                     \
      float acc = 0.0f;                                                                             \
      for (int j = 0; j < k; ++j) acc = acc + ld(w, t * k + j) * ys[(t * k + j) * d + c];           \
      out[i] = acc;                                                                                 \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(moe_combine_##SUF)

ROUTER(float, f32)
ROUTER(bf16, bf16)
