// MXFP4 (refimpl/ops/mxfp4.py, spec/mxfp4.md): E2M1 codes, two per byte, 32 per block of 16 bytes,
// one E8M0 scale byte per block.
//   decode_mxfp4_*: one thread per byte -> two outputs (float32 or bf16, rounded once).
//   mxfp4_linear_*: the fused dequantize-and-multiply, y[m, o] = sum_k x[m, k] W[o, k] + bias[o]:
//     one block per output row o (grid-stride), threads over the blocks of 32 weights, each weight
//     decoded in registers and used for every token row m (up to MAXM per pass); block_sum adds
//     the threads' partial sums in a fixed order.
#include "common.h"

__constant__ float E2M1[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                               -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

// 2^(s - bias) in float32 built from its bits: exact for -149..127, +inf above, 0 below.
RI_DEV float e8m0(unsigned char s, int bias) {
  int e = (int)s - bias;
  if (e >= 128) return ri_inf();
  if (e >= -126) return __uint_as_float((unsigned)(e + 127) << 23);
  if (e >= -149) return __uint_as_float(1u << (e + 149));
  return 0.0f;
}

RI_DEV void codes(unsigned char byte, int high_first, int* c0, int* c1) {
  int lo = byte & 0x0F, hi = byte >> 4;
  *c0 = high_first ? hi : lo;
  *c1 = high_first ? lo : hi;
}

#define DECODE(T, SUF)                                                                              \
  RI_KERNEL decode_mxfp4_##SUF(const unsigned char* blocks, const unsigned char* scales, T* out,    \
                               i64 nbytes, int high_first, int bias) {                             \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < nbytes;                           \
         i += (i64)blockDim.x * gridDim.x) {                                                        \
      float sc = e8m0(scales[i / 16], bias);                                                        \
      int c0, c1;                                                                                   \
      codes(blocks[i], high_first, &c0, &c1);                                                       \
      st(out, 2 * i, E2M1[c0] * sc);                                                                \
      st(out, 2 * i + 1, E2M1[c1] * sc);                                                            \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(decode_mxfp4_##SUF)

DECODE(float, f32)
DECODE(bf16, bf16)

#define MAXM 8
#define MXLIN(T, SUF)                                                                               \
  RI_KERNEL mxfp4_linear_##SUF(const T* x, const unsigned char* blocks, const unsigned char* scales, \
                               const float* bias, float* y, int M, int N, int G, int high_first,       \
                               int sbias) {                                                         \
    int K = 32 * G;                                                                                 \
    for (int o = blockIdx.x; o < N; o += gridDim.x) {                                               \
      const unsigned char* wb = blocks + (i64)o * G * 16;                                           \
      const unsigned char* ws = scales + (i64)o * G;                                                \
      for (int m0 = 0; m0 < M; m0 += MAXM) {                                                        \
        int mc = ri_imin(MAXM, M - m0);                                                             \
        float acc[MAXM];                                                                            \
        for (int m = 0; m < MAXM; ++m) acc[m] = 0.0f;                                               \
        for (int g = threadIdx.x; g < G; g += blockDim.x) {                                         \
          float sc = e8m0(ws[g], sbias);                                                            \
          for (int b = 0; b < 16; ++b) {                                                            \
            int c0, c1;                                                                             \
            codes(wb[(i64)g * 16 + b], high_first, &c0, &c1);                                       \
            float w0 = E2M1[c0] * sc, w1 = E2M1[c1] * sc;                                           \
            int k = 32 * g + 2 * b;                                                                 \
            for (int m = 0; m < mc; ++m) {                                                          \
              const T* xr = x + (i64)(m0 + m) * K;                                                  \
              acc[m] += ld(xr, k) * w0;                                                             \
              acc[m] += ld(xr, k + 1) * w1;                                                         \
            }                                                                                       \
          }                                                                                         \
        }                                                                                           \
        for (int m = 0; m < mc; ++m) {                                                              \
          float s = block_sum(acc[m]);                                                              \
          if (threadIdx.x == 0) y[(i64)(m0 + m) * N + o] = bias ? s + bias[o] : s;             \
        }                                                                                           \
      }                                                                                             \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(mxfp4_linear_##SUF)

MXLIN(float, f32)
MXLIN(bf16, bf16)
