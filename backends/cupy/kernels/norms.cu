// RMSNorm and LayerNorm over the last axis, one block per row (refimpl/ops/norms.py, spec/norms.md);
// the fused variants first add the residual (x + r, stored), then normalise the sum.
// Storage T (float or bf16) for x, r, weight and bias; float32 compute; float32 output.
#include "common.h"

// Block-wide: whether every entry of the row x[0 .. n) is finite, and max |x| in *amax (every thread
// gets both).
template <class T>
__device__ bool row_finite_amax(const T* x, int n, float* amax) {
  float m = 0.0f;
  int finite = 1;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = ld(x, i);
    if (!ri_isfinite(v)) finite = 0;
    m = ri_fmax(m, fabsf(v));
  }
  float bad = block_sum(finite ? 0.0f : 1.0f);
  *amax = block_max(m);
  return bad == 0.0f;
}

// Rows whose sum of squares overflows while the row is finite are recomputed on x / max|x|
// (refimpl's overflow rule), so a finite row never normalises to zeros.
template <class T>
__device__ void rms_norm_row(const T* x, const T* w, float* y, int n, float eps, int cast_before_scale) {
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = ld(x, i);
    ss += v * v;
  }
  float ms = block_sum(ss) / (float)n;
  float s = 1.0f;
  if (!ri_isfinite(ms)) {  // inf or NaN: recompute if the row itself is finite
    float amax;
    if (row_finite_amax(x, n, &amax) && amax > 0.0f) {
      s = amax;
      float su = 0.0f;
      for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float u = ld(x, i) / s;
        su += u * u;
      }
      ms = block_sum(su) / (float)n + eps / (s * s);
      eps = 0.0f;
    }
  }
  float den = sqrtf(ms + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float t = (ld(x, i) / s) / den;
    if (cast_before_scale) t = round_bf16(t);  // HF Llama order, bf16 x only (host decides)
    y[i] = t * ld(w, i);
  }
}

template <class T>
__device__ void layer_norm_row(const T* x, const T* w, const T* b, float* y, int n, float eps) {
  float sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sum += ld(x, i);
  float mean = block_sum(sum) / (float)n;
  float sc = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float c = ld(x, i) - mean;
    sc += c * c;
  }
  float var = block_sum(sc) / (float)n;
  float s = 1.0f, floor_eps = eps;
  if (!ri_isfinite(var)) {
    float amax;
    if (row_finite_amax(x, n, &amax) && amax > 0.0f) {
      s = amax;
      float su = 0.0f;
      for (int i = threadIdx.x; i < n; i += blockDim.x) su += ld(x, i) / s;
      mean = block_sum(su) / (float)n;
      float sq = 0.0f;
      for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float c = ld(x, i) / s - mean;
        sq += c * c;
      }
      var = block_sum(sq) / (float)n;
      floor_eps = eps / (s * s);
    }
  }
  float den = sqrtf(var + floor_eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = (ld(x, i) / s - mean) / den * ld(w, i);
    y[i] = b ? v + ld(b, i) : v;
  }
}

#define NORM_KERNELS(T, SUF)                                                                        \
  RI_KERNEL rms_norm_##SUF(const T* x, const T* w, float* y, int rows, int n, float eps, int cbs) { \
    for (int r = blockIdx.x; r < rows; r += gridDim.x)                                             \
      rms_norm_row<T>(x + (i64)r * n, w, y + (i64)r * n, n, eps, cbs);             \
  }                                                                                                 \
  EMU_EXPORT(rms_norm_##SUF)                                                                        \
  RI_KERNEL layer_norm_##SUF(const T* x, const T* w, const T* b, float* y, int rows, int n,         \
                             float eps) {                                                           \
    for (int r = blockIdx.x; r < rows; r += gridDim.x)                                             \
      layer_norm_row<T>(x + (i64)r * n, w, b, y + (i64)r * n, n, eps);                             \
  }                                                                                                 \
  EMU_EXPORT(layer_norm_##SUF)

NORM_KERNELS(float, f32)
NORM_KERNELS(bf16, bf16)

// Fused residual: xo = x + r (float32, stored), y = rms_norm(xo) (or layer_norm). The sum is
// written by the thread that reads it, before the row statistics are taken, so the block's
// __syncthreads inside the reductions orders the stores before the reads of other threads.
RI_KERNEL residual_rms_norm_f32(const float* x, const float* r, const float* w, float* xo, float* y,
                                int rows, int n, float eps) {
  for (int row = blockIdx.x; row < rows; row += gridDim.x) {
    i64 o = (i64)row * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) xo[o + i] = x[o + i] + r[o + i];
    __syncthreads();
    rms_norm_row<float>(xo + o, w, y + o, n, eps, 0);
  }
}
EMU_EXPORT(residual_rms_norm_f32)

RI_KERNEL residual_layer_norm_f32(const float* x, const float* r, const float* w, const float* b,
                                  float* xo, float* y, int rows, int n, float eps) {
  for (int row = blockIdx.x; row < rows; row += gridDim.x) {
    i64 o = (i64)row * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) xo[o + i] = x[o + i] + r[o + i];
    __syncthreads();
    layer_norm_row<float>(xo + o, w, b, y + o, n, eps);
  }
}
EMU_EXPORT(residual_layer_norm_f32)
