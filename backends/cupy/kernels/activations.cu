// Elementwise activations (refimpl/ops/activations.py, spec/activations.md): one thread per output
// element, grid-stride loops. Storage T (float or bf16) in, float32 compute and output.
#include "common.h"

// sigmoid without overflow: exp is only taken of -|z| (the reference's form, term for term).
RI_DEV float sigmoid_stable(float z) {
  float e = expf(-fabsf(z));
  return z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

#define GRID_STRIDE(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

#define ACT_KERNELS(T, SUF)                                                                         \
  /* approximate = 0: tanh form (GPT-2); 1: exact erf form */                                       \
  RI_KERNEL gelu_##SUF(const T* x, float* y, i64 n, int exact) {                                   \
    GRID_STRIDE(i, n) {                                                                             \
      float v = ld(x, i);                                                                           \
      if (exact) {                                                                                  \
        y[i] = 0.5f * v * (1.0f + erff(v / 1.41421356237309515f));                                  \
      } else {                                                                                      \
        float inner = 0.797884560802865406f * (v + 0.044715f * (v * v * v));                       \
        y[i] = 0.5f * v * (1.0f + tanhf(inner));                                                    \
      }                                                                                             \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(gelu_##SUF)                                                                            \
  RI_KERNEL silu_##SUF(const T* x, float* y, i64 n) {                                              \
    GRID_STRIDE(i, n) {                                                                             \
      float v = ld(x, i);                                                                           \
      y[i] = v * sigmoid_stable(v);                                                                 \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(silu_##SUF)                                                                            \
  RI_KERNEL swiglu_##SUF(const T* g, const T* u, float* y, i64 n) {                                \
    GRID_STRIDE(i, n) {                                                                             \
      float v = ld(g, i);                                                                           \
      y[i] = (v * sigmoid_stable(v)) * ld(u, i);                                                    \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(swiglu_##SUF)                                                                          \
  /* gpt-oss: h [rows, 2I] -> y [rows, I]; interleaved: gate 2j, lin 2j+1; else halves.   */        \
  /* has_limit = 0: no clamping. The clamps keep NaN (fminf would drop it).              */        \
  RI_KERNEL swiglu_oss_##SUF(const T* h, float* y, i64 rows, int half, float alpha, float limit,  \
                             int has_limit, int interleaved) {                                      \
    GRID_STRIDE(i, rows * half) {                                                                   \
      i64 r = i / half;                                                                             \
      int j = (int)(i - r * half);                                                                  \
      const T* row = h + r * 2 * half;                                                              \
      float gate = interleaved ? ld(row, 2 * j) : ld(row, j);                                       \
      float lin = interleaved ? ld(row, 2 * j + 1) : ld(row, half + j);                             \
      if (has_limit) {                                                                              \
        gate = gate > limit ? limit : gate;                                                         \
        lin = lin > limit ? limit : (lin < -limit ? -limit : lin);                                  \
      }                                                                                             \
      float glu = gate * sigmoid_stable(alpha * gate);                                              \
      y[i] = glu * (lin + 1.0f);                                                                    \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(swiglu_oss_##SUF)                                                                      \
  /* logits / temperature (sampling's apply_temperature) */                                         \
  RI_KERNEL scale_div_##SUF(const T* x, float* y, i64 n, float t) {                                \
    GRID_STRIDE(i, n) { y[i] = ld(x, i) / t; }                                                      \
  }                                                                                                 \
  EMU_EXPORT(scale_div_##SUF)

ACT_KERNELS(float, f32)
ACT_KERNELS(bf16, bf16)

// Rounding to bfloat16 storage (the model's bf16 steps): float32 in, bf16 out, nearest even.
RI_KERNEL to_bf16(const float* x, bf16* y, i64 n) {
  GRID_STRIDE(i, n) { y[i] = f32_to_bf16(x[i]); }
}
EMU_EXPORT(to_bf16)

// Residual add in float32: y = a + b (same shapes).
RI_KERNEL add_f32(const float* a, const float* b, float* y, i64 n) {
  GRID_STRIDE(i, n) { y[i] = a[i] + b[i]; }
}
EMU_EXPORT(add_f32)
