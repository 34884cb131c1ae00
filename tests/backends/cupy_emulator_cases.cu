// Kernels that check the CPU emulator itself (tests/backends/test_cupy_emulated.py), built with
// refimpl.backends.cupy.runtime.build_emulated. Not part of the backend.
#include "common.h"

// out[k * blockDim + t] = 10 * (t ^ m) after an xor shuffle with m = 2^k, k = 0..4.
RI_KERNEL shuffle_xor(int* out) {
  int t = threadIdx.x;
  int k = 0;
  for (int m = 1; m < 32; m <<= 1, ++k) out[k * blockDim.x + t] = __shfl_xor_sync(0xffffffffu, t * 10, m);
}
EMU_EXPORT(shuffle_xor)

// Every thread of every block adds 1 to counter[0] and its thread index to counter[1].
RI_KERNEL atomic_count(unsigned* counter) {
  atomicAdd(&counter[0], 1u);
  atomicAdd(&counter[1], (unsigned)threadIdx.x);
}
EMU_EXPORT(atomic_count)

// A block-wide sum through shared memory: correct only because of the two __syncthreads.
RI_KERNEL shared_sum(const float* x, float* out, int n) {
  __shared__ float buf[1024];
  float s = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
  buf[threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.0f;
    for (unsigned i = 0; i < blockDim.x; ++i) t += buf[i];
    out[blockIdx.x] = t;
  }
  __syncthreads();
}
EMU_EXPORT(shared_sum)

// Undefined in CUDA: only half the block reaches the barrier. The emulator must report it, not hang.
RI_KERNEL divergent_barrier(int* out) {
  if (threadIdx.x < blockDim.x / 2) __syncthreads();
  out[threadIdx.x] = 1;
}
EMU_EXPORT(divergent_barrier)

// float32 -> bf16 bits (common.h's round to nearest even).
RI_KERNEL bf16_bits(const float* x, unsigned short* y, i64 n) {
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)blockDim.x * gridDim.x)
    y[i] = f32_to_bf16(x[i]).bits;
}
EMU_EXPORT(bf16_bits)
