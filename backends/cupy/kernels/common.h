// common.h: what every kernel file of refimpl's CuPy backend shares (spec/backends-cupy.md).
// The same source compiles three ways: nvcc (PTX for sm_90), NVRTC through cupy.RawModule, and g++
// with -DREFIMPL_EMULATE against emulate.h (the CPU emulator). No CUDA header is included, so NVRTC
// needs nothing but this folder on its include path.
#pragma once
#ifdef REFIMPL_EMULATE
#include "emulate.h"
#else
#define EMU_EXPORT(name)
#endif

#define RI_KERNEL extern "C" __global__ void
#define RI_DEV __device__ __forceinline__

typedef long long i64;

// bfloat16 storage: the upper 16 bits of a float32. Loads are exact; stores round to nearest even
// (NaN stays NaN, quiet). Plain integer code, identical on device and host.
struct bf16 {
  unsigned short bits;
};

RI_DEV float bf16_to_f32(bf16 v) { return __uint_as_float(((unsigned)v.bits) << 16); }
RI_DEV bf16 f32_to_bf16(float f) {
  unsigned u = __float_as_uint(f);
  bf16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep the sign, make it quiet
    r.bits = (unsigned short)((u >> 16) | 0x0040u);
    return r;
  }
  unsigned lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;
  r.bits = (unsigned short)(u >> 16);
  return r;
}
RI_DEV float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// Storage types: load<T> widens to float32 exactly, store<T> rounds once.
template <class T> RI_DEV float ld(const T* p, i64 i);
template <> RI_DEV float ld<float>(const float* p, i64 i) { return p[i]; }
template <> RI_DEV float ld<bf16>(const bf16* p, i64 i) { return bf16_to_f32(p[i]); }
RI_DEV double ld(const double* p, i64 i) { return p[i]; }  // float64 kernels (rope tables)
template <class T> RI_DEV void st(T* p, i64 i, float v);
template <> RI_DEV void st<float>(float* p, i64 i, float v) { p[i] = v; }
template <> RI_DEV void st<bf16>(bf16* p, i64 i, float v) { p[i] = f32_to_bf16(v); }

RI_DEV float ri_inf() { return __uint_as_float(0x7f800000u); }
RI_DEV float ri_nan() { return __uint_as_float(0x7fc00000u); }
RI_DEV bool ri_isnan(float x) { return x != x; }
RI_DEV bool ri_isfinite(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }
RI_DEV float ri_fmax(float a, float b) { return a > b ? a : b; }  // NaN in b is dropped: callers check
RI_DEV int ri_imin(int a, int b) { return a < b ? a : b; }

// Reductions over the whole block. Every thread must call them (they contain __syncthreads) and
// blockDim.x must be a multiple of 32 (<= 1024). Each warp reduces with xor shuffles, then every
// thread adds the warp results in warp order: a fixed order, so the result is the same in every
// thread and on every run.
RI_DEV float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
RI_DEV float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) {
    float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = (w > v || ri_isnan(w)) ? w : v;  // NaN wins, as numpy's max
  }
  return v;
}
__device__ float block_sum(float v) {
  __shared__ float red[32];
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // the previous use of red is finished
  if (lane == 0) red[w] = v;
  __syncthreads();
  float t = 0.0f;
  for (int i = 0; i < nw; ++i) t += red[i];
  return t;
}
__device__ float block_max(float v) {
  __shared__ float red[32];
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[w] = v;
  __syncthreads();
  float t = red[0];
  for (int i = 1; i < nw; ++i) t = (red[i] > t || ri_isnan(red[i])) ? red[i] : t;
  return t;
}
