// Scaled dot-product attention (refimpl/ops/attention.py, spec/attention.md).
// q [B, Tq, Hq, D] (C order); k [B, Tk, Hkv, D], v [B, Tk, Hkv, Dv] given by element strides
// (sb, st, sh) with the last axis contiguous, so a KV-cache buffer [.., Hkv, Tmax, D] is read in
// place through its [.., T, Hkv, D] view. Query head h reads kv head h / (Hq / Hkv) (GQA).
// Visibility of key j to query i (position p = q_offset + i): (!causal || j <= p) &&
// (window == 0 || j > p - window) && (mask == NULL || mask[b, h, i, j]); mask is uint8
// [B, Hq, Tq, Tk]. sinks: one logit per query head (or NULL), in the denominator only.
// The running state starts at (m, l) = (sink, 1) for a finite sink, else (-inf, 0); a key tile
// whose maximum stays -inf leaves the state unchanged; o / l at the end, 0 when l == 0.
// Output float32 [B, Tq, Hq, Dv]. Storage T (float or bf16) for q, k, v; sinks float32.
#include "common.h"

struct KV {
  i64 sb, st, sh;
};

RI_DEV bool visible(int j, int p, int causal, int window, const unsigned char* mask, i64 mrow) {
  if (causal && j > p) return false;
  if (window > 0 && j <= p - window) return false;
  if (mask && !mask[mrow + j]) return false;
  return true;
}

RI_DEV float nan_max(float a, float b) { return (b > a || ri_isnan(b)) ? b : a; }

// ---------------------------------------------------------------- rows: one block per (b, h, i)
// The decode kernel (any Tq; used for short Tq). Threads split each chunk of blockDim keys for the
// scores (one key each), then split the value dimension for the weighted sum.
#define ROWS_DMAX 256
#define ROWS_KMAX 1024
template <class T>
__device__ void attn_rows(const T* q, const T* k, const T* v, KV ks, KV vs, const float* sinks,
                          const unsigned char* mask, float* out, int B, int Tq, int Tk, int Hq, int Hkv,
                          int D, int Dv, int q_offset, int window, int causal, float scale) {
  __shared__ float qs[ROWS_DMAX];
  __shared__ float os[ROWS_DMAX];
  __shared__ float ps[ROWS_KMAX];
  __shared__ unsigned char vis[ROWS_KMAX];
  int G = Hq / Hkv;
  for (i64 row = blockIdx.x; row < (i64)B * Hq * Tq; row += gridDim.x) {
    int i = (int)(row % Tq);
    int h = (int)((row / Tq) % Hq);
    int b = (int)(row / ((i64)Tq * Hq));
    int hk = h / G;
    int p = q_offset + i;
    const T* qr = q + (((i64)b * Tq + i) * Hq + h) * D;
    i64 mrow = (((i64)b * Hq + h) * Tq + i) * Tk;
    __syncthreads();  // the previous row is done with qs / os
    for (int d = threadIdx.x; d < D; d += blockDim.x) qs[d] = ld(qr, d);
    for (int d = threadIdx.x; d < Dv; d += blockDim.x) os[d] = 0.0f;
    float sink = sinks ? sinks[h] : -ri_inf();
    // l is kept per thread (each thread's share of the denominator, all rescaled by the same a) and
    // added up once at the end; the sink's initial 1 is thread 0's.
    float m = sink, l = (threadIdx.x == 0 && sink != -ri_inf()) ? 1.0f : 0.0f;
    __syncthreads();
    for (int t0 = 0; t0 < Tk; t0 += blockDim.x) {
      int j = t0 + threadIdx.x;
      bool ok = j < Tk && visible(j, p, causal, window, mask, mrow);
      float s = -ri_inf();
      if (ok) {
        const T* kr = k + b * ks.sb + (i64)j * ks.st + hk * ks.sh;
        float dot = 0.0f;
        for (int d = 0; d < D; ++d) dot += qs[d] * ld(kr, d);
        s = dot * scale;
      }
      float m_new = nan_max(m, block_max(s));
      // Nothing visible yet (m_new = -inf): a = 1 and every p = 0, the state stays as it is, but a
      // visible key still adds 0 * v (NaN for an infinite v), as the reference does.
      bool dead = m_new == -ri_inf();
      float m_safe = dead ? 0.0f : m_new;
      float a = dead ? 1.0f : expf(m - m_new);  // 0 when m = -inf
      float pj = ok ? expf(s - m_safe) : 0.0f;
      ps[threadIdx.x] = pj;
      vis[threadIdx.x] = ok ? 1 : 0;
      l = a * l + pj;
      __syncthreads();  // publishes ps / vis
      int n = ri_imin(blockDim.x, Tk - t0);
      for (int d = threadIdx.x; d < Dv; d += blockDim.x) {
        float acc = 0.0f;
        for (int c = 0; c < n; ++c)
          if (vis[c]) acc += ps[c] * ld(v + b * vs.sb + (i64)(t0 + c) * vs.st + hk * vs.sh, d);
        os[d] = a * os[d] + acc;
      }
      if (!dead) m = m_new;
      __syncthreads();  // ps / vis are read before the next chunk writes them
    }
    float lt = block_sum(l);
    float inv = lt == 0.0f ? 1.0f : lt;
    float* orow = out + (((i64)b * Tq + i) * Hq + h) * Dv;
    for (int d = threadIdx.x; d < Dv; d += blockDim.x) orow[d] = os[d] / inv;
  }
}

// ---------------------------------------------------------------- tiled: prefill
// One block per (b, h, tile of BQ queries); keys in tiles of BK staged in shared memory with their
// values; scores S[BQ][BK] in shared memory; one thread per query row updates (m, l) (online
// softmax); all threads update O[BQ][Dv]. D, Dv <= TDMAX.
#define BQ 16
#define BK 16
#define TDMAX 128
template <class T>
__device__ void attn_tiled(const T* q, const T* k, const T* v, KV ks, KV vs, const float* sinks,
                           const unsigned char* mask, float* out, int B, int Tq, int Tk, int Hq, int Hkv,
                           int D, int Dv, int q_offset, int window, int causal, float scale) {
  __shared__ float Qs[BQ][TDMAX];
  __shared__ float Ks[BK][TDMAX];
  __shared__ float Vs[BK][TDMAX];
  __shared__ float O[BQ][TDMAX];
  __shared__ float S[BQ][BK];
  __shared__ unsigned char Vis[BQ][BK];
  __shared__ float Ms[BQ], Ls[BQ], As[BQ];
  int G = Hq / Hkv;
  int ntile = (Tq + BQ - 1) / BQ;
  for (i64 blk = blockIdx.x; blk < (i64)B * Hq * ntile; blk += gridDim.x) {
    int qt = (int)(blk % ntile);
    int h = (int)((blk / ntile) % Hq);
    int b = (int)(blk / ((i64)ntile * Hq));
    int hk = h / G;
    int i0 = qt * BQ;
    int nq = ri_imin(BQ, Tq - i0);
    __syncthreads();  // the previous tile is finished with the shared arrays
    for (int e = threadIdx.x; e < BQ * TDMAX; e += blockDim.x) {
      int r = e / TDMAX, d = e % TDMAX;
      Qs[r][d] = (r < nq && d < D) ? ld(q, (((i64)b * Tq + i0 + r) * Hq + h) * D + d) : 0.0f;
      O[r][d] = 0.0f;
    }
    if (threadIdx.x < BQ) {
      float sink = sinks ? sinks[h] : -ri_inf();
      Ms[threadIdx.x] = sink;
      Ls[threadIdx.x] = sink == -ri_inf() ? 0.0f : 1.0f;
    }
    int p_lo = q_offset + i0, p_hi = q_offset + i0 + nq - 1;
    for (int t0 = 0; t0 < Tk; t0 += BK) {
      // A tile no query of this block can see leaves every state unchanged: skip it (no mask only).
      if (!mask && causal && t0 > p_hi) break;
      if (!mask && window > 0 && t0 + BK - 1 <= p_lo - window) continue;
      int nk = ri_imin(BK, Tk - t0);
      __syncthreads();  // the previous key tile is consumed
      for (int e = threadIdx.x; e < BK * TDMAX; e += blockDim.x) {
        int c = e / TDMAX, d = e % TDMAX;
        bool in = c < nk;
        Ks[c][d] = (in && d < D) ? ld(k + b * ks.sb + (i64)(t0 + c) * ks.st + hk * ks.sh, d) : 0.0f;
        Vs[c][d] = (in && d < Dv) ? ld(v + b * vs.sb + (i64)(t0 + c) * vs.st + hk * vs.sh, d) : 0.0f;
      }
      __syncthreads();
      for (int e = threadIdx.x; e < BQ * BK; e += blockDim.x) {
        int r = e / BK, c = e % BK;
        int i = i0 + r, j = t0 + c;
        bool ok = r < nq && c < nk &&
                  visible(j, q_offset + i, causal, window, mask, (((i64)b * Hq + h) * Tq + i) * Tk);
        float s = -ri_inf();
        if (ok) {
          float dot = 0.0f;
          for (int d = 0; d < D; ++d) dot += Qs[r][d] * Ks[c][d];
          s = dot * scale;
        }
        S[r][c] = s;
        Vis[r][c] = ok ? 1 : 0;
      }
      __syncthreads();
      if (threadIdx.x < BQ) {
        int r = threadIdx.x;
        float m = Ms[r], m_new = m;
        for (int c = 0; c < BK; ++c) m_new = nan_max(m_new, S[r][c]);
        if (m_new == -ri_inf()) {  // nothing visible yet: state unchanged (visible keys add 0 * v)
          As[r] = 1.0f;
          for (int c = 0; c < BK; ++c) S[r][c] = 0.0f;
        } else {
          float a = expf(m - m_new), sum = 0.0f;
          for (int c = 0; c < BK; ++c) {
            float pj = Vis[r][c] ? expf(S[r][c] - m_new) : 0.0f;
            S[r][c] = pj;
            sum += pj;
          }
          As[r] = a;
          Ls[r] = a * Ls[r] + sum;
          Ms[r] = m_new;
        }
      }
      __syncthreads();
      for (int e = threadIdx.x; e < BQ * Dv; e += blockDim.x) {
        int r = e / Dv, d = e % Dv;
        float acc = 0.0f;
        for (int c = 0; c < nk; ++c)
          if (Vis[r][c]) acc += S[r][c] * Vs[c][d];
        O[r][d] = As[r] * O[r][d] + acc;
      }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < nq * Dv; e += blockDim.x) {
      int r = e / Dv, d = e % Dv;
      float l = Ls[r];
      out[(((i64)b * Tq + i0 + r) * Hq + h) * Dv + d] = O[r][d] / (l == 0.0f ? 1.0f : l);
    }
  }
}

// ---------------------------------------------------------------- the bf16 building blocks
// scores s [B, Hq, Tq, Tk] (-inf where not visible), one thread per entry.
template <class T>
__device__ void attn_scores(const T* q, const T* k, KV ks, const unsigned char* mask, float* s, int B,
                            int Tq, int Tk, int Hq, int Hkv, int D, int q_offset, int window, int causal,
                            float scale) {
  int G = Hq / Hkv;
  i64 total = (i64)B * Hq * Tq * Tk;
  for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (i64)blockDim.x * gridDim.x) {
    int j = (int)(e % Tk);
    i64 rowi = e / Tk;  // (b, h, i)
    int i = (int)(rowi % Tq);
    int h = (int)((rowi / Tq) % Hq);
    int b = (int)(rowi / ((i64)Tq * Hq));
    float out = -ri_inf();
    if (visible(j, q_offset + i, causal, window, mask, rowi * Tk)) {
      const T* qr = q + (((i64)b * Tq + i) * Hq + h) * D;
      const T* kr = k + b * ks.sb + (i64)j * ks.st + (h / G) * ks.sh;
      float dot = 0.0f;
      for (int d = 0; d < D; ++d) dot += ld(qr, d) * ld(kr, d);
      out = dot * scale;
    }
    s[e] = out;
  }
}

// softmax over the last axis of s [rows, Tk] with sink logit sinks[(row / Tq) % Hq]; one block per row.
template <class T>
__device__ void softmax_sinks(const T* s, const float* sinks, float* p, i64 rows, int Tq, int Hq, int Tk) {
  for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* sr = s + r * Tk;
    float sink = sinks ? sinks[(r / Tq) % Hq] : -ri_inf();
    float mx = -ri_inf();
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) mx = nan_max(mx, ld(sr, j));
    float m = nan_max(block_max(mx), sink);
    if (m == -ri_inf()) m = 0.0f;
    float e = 0.0f;
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) e += expf(ld(sr, j) - m);
    float den = block_sum(e);
    if (sinks) den += expf(sink - m);
    if (den == 0.0f) den = 1.0f;
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) p[r * Tk + j] = expf(ld(sr, j) - m) / den;
  }
}

// o[b, i, h, :] = sum_j p[b, h, i, j] v[b, j, h / G, :] over keys with vis[b, h, i, j] (all if NULL).
template <class T>
__device__ void attn_values(const T* p, const T* v, KV vs, const unsigned char* vis, float* o, int B, int Tq,
                            int Tk, int Hq, int Hkv, int Dv) {
  int G = Hq / Hkv;
  i64 total = (i64)B * Tq * Hq * Dv;
  for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (i64)blockDim.x * gridDim.x) {
    int d = (int)(e % Dv);
    int h = (int)((e / Dv) % Hq);
    int i = (int)((e / ((i64)Dv * Hq)) % Tq);
    int b = (int)(e / ((i64)Dv * Hq * Tq));
    i64 prow = (((i64)b * Hq + h) * Tq + i) * Tk;
    float acc = 0.0f;
    for (int j = 0; j < Tk; ++j)
      if (!vis || vis[prow + j]) acc += ld(p, prow + j) * ld(v + b * vs.sb + (i64)j * vs.st + (h / G) * vs.sh, d);
    o[e] = acc;
  }
}

#define ATTN_ARGS                                                                                   \
  const float *sinks, const unsigned char *mask, float *out, int B, int Tq, int Tk, int Hq, int Hkv, \
      int D, int Dv, int q_offset, int window, int causal, float scale
#define ATTN_PASS sinks, mask, out, B, Tq, Tk, Hq, Hkv, D, Dv, q_offset, window, causal, scale

#define ATTN_KERNELS(T, SUF)                                                                        \
  RI_KERNEL attention_rows_##SUF(const T* q, const T* k, const T* v, i64 ksb, i64 kst, i64 ksh,     \
                                 i64 vsb, i64 vst, i64 vsh, ATTN_ARGS) {                            \
    attn_rows<T>(q, k, v, KV{ksb, kst, ksh}, KV{vsb, vst, vsh}, ATTN_PASS);                         \
  }                                                                                                 \
  EMU_EXPORT(attention_rows_##SUF)                                                                  \
  RI_KERNEL attention_tiled_##SUF(const T* q, const T* k, const T* v, i64 ksb, i64 kst, i64 ksh,    \
                                  i64 vsb, i64 vst, i64 vsh, ATTN_ARGS) {                           \
    attn_tiled<T>(q, k, v, KV{ksb, kst, ksh}, KV{vsb, vst, vsh}, ATTN_PASS);                        \
  }                                                                                                 \
  EMU_EXPORT(attention_tiled_##SUF)                                                                 \
  RI_KERNEL attention_scores_##SUF(const T* q, const T* k, i64 ksb, i64 kst, i64 ksh,              \
                                   const unsigned char* mask, float* s, int B, int Tq, int Tk,      \
                                   int Hq, int Hkv, int D, int q_offset, int window, int causal,    \
                                   float scale) {                                                   \
    attn_scores<T>(q, k, KV{ksb, kst, ksh}, mask, s, B, Tq, Tk, Hq, Hkv, D, q_offset, window,       \
                   causal, scale);                                                                  \
  }                                                                                                 \
  EMU_EXPORT(attention_scores_##SUF)                                                                \
  RI_KERNEL softmax_sinks_##SUF(const T* s, const float* sinks, float* p, i64 rows, int Tq, int Hq, \
                                int Tk) {                                                           \
    softmax_sinks<T>(s, sinks, p, rows, Tq, Hq, Tk);                                                \
  }                                                                                                 \
  EMU_EXPORT(softmax_sinks_##SUF)                                                                   \
  RI_KERNEL attention_values_##SUF(const T* p, const T* v, i64 vsb, i64 vst, i64 vsh,              \
                                   const unsigned char* vis, float* o, int B, int Tq, int Tk,       \
                                   int Hq, int Hkv, int Dv) {                                       \
    attn_values<T>(p, v, KV{vsb, vst, vsh}, vis, o, B, Tq, Tk, Hq, Hkv, Dv);                        \
  }                                                                                                 \
  EMU_EXPORT(attention_values_##SUF)

ATTN_KERNELS(float, f32)
ATTN_KERNELS(bf16, bf16)
