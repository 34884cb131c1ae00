// Embedding gathers (refimpl/ops/embed.py): out[i, :] = table[ids[i], :], exact copies of the
// table's elements (W = an unsigned type of the element's width: 8, 4 or 2 bytes). ids are checked on the
// host (0 <= id < V) before the launch; with ids == NULL row i is offset + i (learned positions).
#include "common.h"

#define GATHER(W, SUF)                                                                              \
  RI_KERNEL gather_rows_##SUF(const W* table, const i64* ids, W* out, i64 n, int d, i64 offset) {  \
    for (i64 r = blockIdx.x; r < n; r += gridDim.x) {                                               \
      i64 src = ids ? ids[r] : offset + r;                                                          \
      for (int c = threadIdx.x; c < d; c += blockDim.x) out[r * d + c] = table[src * d + c];        \
    }                                                                                               \
  }                                                                                                 \
  EMU_EXPORT(gather_rows_##SUF)

GATHER(unsigned long long, b64)
GATHER(unsigned, b32)
GATHER(unsigned short, b16)
