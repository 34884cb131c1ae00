// y = x @ w.T + bias (refimpl/ops/linear.py). On a GPU the backend calls cuBLAS through CuPy's
// matmul instead (kernel "cublas"); this kernel ("rowdot") is what the emulator runs and the GPU
// runs under with_kernel("linear", "rowdot"). One thread per output element, the dot product
// accumulated in float32 in index order, then the bias added (one rounding), as the reference's rule.
// x [M, K] storage TX, w [N, K] storage TW, bias [N] float32 or NULL, y [M, N] float32.
#include "common.h"

#define GEMM(TX, TW, SUF)                                                                           \
  RI_KERNEL linear_rowdot_##SUF(const TX* x, const TW* w, const float* bias, float* y, i64 M, int N,  \
                                int K) {                                                            \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < M * N;                            \
         i += (i64)blockDim.x * gridDim.x) {                                                        \
      i64 m = i / N;                                                                                \
      int n = (int)(i - m * N);                                                                     \
      const TX* xr = x + m * K;                                                                     \
      const TW* wr = w + (i64)n * K;                                                                \
      float acc = 0.0f;                                                                             \
      for (int k = 0; k < K; ++k) acc += ld(xr, k) * ld(wr, k);                                     \
      y[i] = bias ? acc + bias[n] : acc;                                                        \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(linear_rowdot_##SUF)

GEMM(float, float, f32)
GEMM(bf16, bf16, bf16)
GEMM(float, bf16, f32_bf16)

// "gemv": the decode shape (few rows of x). One block per output n (grid-stride); the threads
// stride over k, so consecutive threads read consecutive weights (coalesced) and each weight is
// read once for up to GV_M rows of x; block_sum adds the threads' partial sums in a fixed order.
#define GV_M 8
#define GEMV(TX, TW, SUF)                                                                           \
  RI_KERNEL linear_gemv_##SUF(const TX* x, const TW* w, const float* bias, float* y, int M, int N, \
                              int K) {                                                              \
    for (int n = blockIdx.x; n < N; n += gridDim.x) {                                               \
      const TW* wr = w + (i64)n * K;                                                                \
      for (int m0 = 0; m0 < M; m0 += GV_M) {                                                        \
        int mc = ri_imin(GV_M, M - m0);                                                             \
        float acc[GV_M];                                                                            \
        for (int m = 0; m < GV_M; ++m) acc[m] = 0.0f;                                               \
        for (int k = threadIdx.x; k < K; k += blockDim.x) {                                         \
          float wk = ld(wr, k);                                                                     \
          for (int m = 0; m < mc; ++m) acc[m] += ld(x, (i64)(m0 + m) * K + k) * wk;                 \
        }                                                                                           \
        for (int m = 0; m < mc; ++m) {                                                              \
          float s = block_sum(acc[m]);                                                              \
          if (threadIdx.x == 0) y[(i64)(m0 + m) * N + n] = bias ? s + bias[n] : s;                  \
        }                                                                                           \
      }                                                                                             \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(linear_gemv_##SUF)

GEMV(float, float, f32)
GEMV(bf16, bf16, bf16)
GEMV(float, bf16, f32_bf16)
