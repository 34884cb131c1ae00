// Next-token selection (refimpl/ops/sampling.py, spec/sampling.md); one block per row of logits
// [rows, V]. Storage T (float or bf16) in; float32 logits out, int64 ids out.
//   argmax: the first maximum (lowest index among equal values); +-inf are ordinary values.
//   softmax_rows: exp(x - m) / sum, m the row max (0 when it is -inf); an all -inf row gives zeros.
//   topk_filter: threshold = the k-th largest value (repeats counted), found by a 4-pass radix select
//     on order-preserving 32-bit keys (shared 256-bin histograms, atomicAdd); keep x >= threshold.
//   topp_filter: the stable descending order (ties by lower index) by a block-wide LSD radix sort of
//     32-bit order-preserving keys (8 passes of 4 bits, O(V) work per row), the exclusive prefix sum
//     of the probabilities in that order taken sequentially in float32 by one thread, token of rank r
//     kept iff (double)S_r < p or r < min_keep.
//   sample_draw: float64, one thread per row, left to right: e_i = exp(x_i - m), C_i = e_0 + .. + e_i,
//     token = #{i: C_i <= u C_{V-1}} (capped at V - 1), u the host-drawn uniform of the row.
#include "common.h"

RI_DEV unsigned order_key(float f) {
  unsigned u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
RI_DEV float key_value(unsigned k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

#define SMAX 1024
#define SAMPLING(T, SUF)                                                                            \
  RI_KERNEL argmax_##SUF(const T* x, i64* out, i64 rows, int V) {                                  \
    __shared__ float bv[SMAX];                                                                      \
    __shared__ int bi[SMAX];                                                                        \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                            \
      const T* xr = x + r * V;                                                                      \
      float best = -ri_inf();                                                                       \
      int idx = V;                                                                                  \
      for (int i = threadIdx.x; i < V; i += blockDim.x) {                                           \
        float v = ld(xr, i);                                                                        \
        if (idx == V || v > best) { best = v; idx = i; }                                            \
      }                                                                                             \
      __syncthreads();                                                                              \
      bv[threadIdx.x] = best;                                                                       \
      bi[threadIdx.x] = idx;                                                                        \
      for (int s = blockDim.x / 2; s > 0; s >>= 1) {                                                \
        __syncthreads();                                                                            \
        if ((int)threadIdx.x < s) {                                                                 \
          float ov = bv[threadIdx.x + s];                                                           \
          int oi = bi[threadIdx.x + s];                                                             \
          int mi = bi[threadIdx.x];                                                                 \
          if (oi < V && (mi == V || ov > bv[threadIdx.x] || (ov == bv[threadIdx.x] && oi < mi))) {  \
            bv[threadIdx.x] = ov;                                                                   \
            bi[threadIdx.x] = oi;                                                                   \
          }                                                                                         \
        }                                                                                           \
      }                                                                                             \
      __syncthreads();                                                                              \
      if (threadIdx.x == 0) out[r] = bi[0];                                                         \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(argmax_##SUF)                                                                          \
  RI_KERNEL softmax_rows_##SUF(const T* x, float* y, i64 rows, int V) {                            \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                            \
      const T* xr = x + r * V;                                                                      \
      float mx = -ri_inf();                                                                         \
      for (int i = threadIdx.x; i < V; i += blockDim.x) mx = ri_fmax(mx, ld(xr, i));                \
      float m = block_max(mx);                                                                      \
      if (m == -ri_inf()) m = 0.0f;                                                                 \
      float s = 0.0f;                                                                               \
      for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(ld(xr, i) - m);                   \
      s = block_sum(s);                                                                             \
      for (int i = threadIdx.x; i < V; i += blockDim.x)                                             \
        y[r * V + i] = s == 0.0f ? 0.0f : expf(ld(xr, i) - m) / s;                                  \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(softmax_rows_##SUF)                                                                    \
  RI_KERNEL topk_filter_##SUF(const T* x, float* y, i64 rows, int V, int k) {                      \
    __shared__ unsigned hist[256];                                                                  \
    __shared__ unsigned prefix_s, kk_s;                                                             \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                            \
      const T* xr = x + r * V;                                                                      \
      unsigned prefix = 0, mask = 0;                                                                \
      if (threadIdx.x == 0) kk_s = (unsigned)(k < V ? k : V);                                       \
      for (int shift = 24; shift >= 0; shift -= 8) {                                                \
        __syncthreads();                                                                            \
        for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;                            \
        __syncthreads();                                                                            \
        for (int i = threadIdx.x; i < V; i += blockDim.x) {                                         \
          unsigned key = order_key(ld(xr, i));                                                      \
          if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);                  \
        }                                                                                           \
        __syncthreads();                                                                            \
        if (threadIdx.x == 0) {                                                                     \
          unsigned cum = 0, kk = kk_s;                                                              \
          int b = 255;                                                                              \
          for (; b > 0; --b) {                                                                      \
            if (cum + hist[b] >= kk) break;                                                         \
            cum += hist[b];                                                                         \
          }                                                                                         \
          kk_s = kk - cum;                                                                          \
          prefix_s = prefix | ((unsigned)b << shift);                                               \
        }                                                                                           \
        __syncthreads();                                                                            \
        prefix = prefix_s;                                                                          \
        mask |= 255u << shift;                                                                      \
      }                                                                                             \
      float thr = key_value(prefix);                                                                \
      for (int i = threadIdx.x; i < V; i += blockDim.x) {                                           \
        float v = ld(xr, i);                                                                        \
        y[r * V + i] = v >= thr ? v : -ri_inf();                                                    \
      }                                                                                             \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(topk_filter_##SUF)                                                                     \
  /* q: the row probabilities (softmax_rows); keys, idx: 2 * rows * V each (ping-pong buffers);    \
     counts: gridDim.x * 16 * blockDim.x. Stable LSD radix sort, 4-bit digits, 8 passes: thread t  \
     owns the contiguous chunk [t*C, (t+1)*C) of the row and scatters it in order, so equal keys   \
     keep their index order. Key = ~order_key(x) (descending; -0 counts as +0, as x_j == x_i). */  \
  RI_KERNEL topp_filter_##SUF(const T* x, const float* q, unsigned* keys, int* idx,                \
                              unsigned* counts, float* y, i64 rows, int V, double p,                \
                              int min_keep) {                                                       \
    const int nt = blockDim.x, t = threadIdx.x;                                                     \
    const i64 chunk = ((i64)V + nt - 1) / nt;                                                       \
    const i64 lo = t * chunk < V ? t * chunk : V, hi = lo + chunk < V ? lo + chunk : V;             \
    unsigned* cnt = counts + (i64)blockIdx.x * 16 * nt;                                             \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                            \
      const T* xr = x + r * V;                                                                      \
      unsigned* ka = keys + r * 2 * V;                                                              \
      unsigned* kb = ka + V;                                                                        \
      int* ia = idx + r * 2 * V;                                                                    \
      int* ib = ia + V;                                                                             \
      for (int i = t; i < V; i += nt) {                                                             \
        float v = ld(xr, i);                                                                        \
        ka[i] = ~order_key(v == 0.0f ? 0.0f : v);                                                   \
        ia[i] = i;                                                                                  \
      }                                                                                             \
      for (int shift = 0; shift < 32; shift += 4) {                                                 \
        unsigned c[16];                                                                             \
        for (int d = 0; d < 16; ++d) c[d] = 0u;                                                     \
        __syncthreads(); /* keys written; the previous pass's offsets read */                      \
        for (i64 i = lo; i < hi; ++i) c[(ka[i] >> shift) & 15u] += 1u;                              \
        for (int d = 0; d < 16; ++d) cnt[d * nt + t] = c[d];                                        \
        __syncthreads();                                                                            \
        if (t == 0) { /* exclusive scan, digit-major: (digit 0: threads 0..nt-1), (digit 1: ..) */  \
          unsigned s = 0u;                                                                          \
          for (int j = 0; j < 16 * nt; ++j) {                                                       \
            unsigned n = cnt[j];                                                                    \
            cnt[j] = s;                                                                             \
            s += n;                                                                                 \
          }                                                                                         \
        }                                                                                           \
        __syncthreads();                                                                            \
        for (int d = 0; d < 16; ++d) c[d] = cnt[d * nt + t];                                        \
        for (i64 i = lo; i < hi; ++i) {                                                             \
          unsigned o = c[(ka[i] >> shift) & 15u]++;                                                 \
          kb[o] = ka[i];                                                                            \
          ib[o] = ia[i];                                                                            \
        }                                                                                           \
        unsigned* kt = ka; ka = kb; kb = kt;                                                        \
        int* it = ia; ia = ib; ib = it;                                                             \
      }                                                                                             \
      __syncthreads(); /* ia: the indices in rank order (8 passes: back in the first buffer) */     \
      if (t == 0) {                                                                                 \
        float s = 0.0f;                                                                             \
        for (int k = 0; k < V; ++k) {                                                               \
          kb[k] = ((double)s < p || k < min_keep) ? 1u : 0u;                                        \
          s = s + q[r * V + ia[k]];                                                                 \
        }                                                                                           \
      }                                                                                             \
      __syncthreads();                                                                              \
      for (int k = t; k < V; k += nt) {                                                             \
        int i = ia[k];                                                                              \
        y[r * V + i] = kb[k] ? ld(xr, i) : -ri_inf();                                               \
      }                                                                                             \
      __syncthreads(); /* kb and ia are reused by the next row of this block */                    \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(topp_filter_##SUF)                                                                     \
  RI_KERNEL sample_draw_##SUF(const T* x, const double* u, i64* out, i64 rows, int V) {            \
    for (i64 r = (i64)blockIdx.x * blockDim.x + threadIdx.x; r < rows;                             \
         r += (i64)blockDim.x * gridDim.x) {                                                        \
      const T* xr = x + r * V;                                                                      \
      double m = -1.0 / 0.0;                                                                        \
      for (int i = 0; i < V; ++i) m = (double)ld(xr, i) > m ? (double)ld(xr, i) : m;                \
      double c = 0.0;                                                                               \
      for (int i = 0; i < V; ++i) c += exp((double)ld(xr, i) - m);                                  \
      double target = u[r] * c;                                                                     \
      double ci = 0.0;                                                                              \
      i64 idx = 0;                                                                                  \
      for (int i = 0; i < V; ++i) {                                                                 \
        ci += exp((double)ld(xr, i) - m);                                                           \
        if (ci <= target) idx = i + 1;                                                              \
      }                                                                                             \
      out[r] = idx < V ? idx : V - 1;                                                               \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(sample_draw_##SUF)

SAMPLING(float, f32)
SAMPLING(bf16, bf16)
