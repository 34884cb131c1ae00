// emulate.h: the CUDA execution model on the host, so that the kernels of this folder compile with g++
// (-DREFIMPL_EMULATE) and run on NumPy arrays through ctypes. See spec/backends-cupy.md.
//
// Linux only (the barrier sleeps on a futex).
//
// Model: a launch runs its blocks one after another (x fastest, then y, then z). The threads of a
// block are real std::threads, created once per launch and reused for every block; __syncthreads is
// a barrier of all of them; a warp (32 consecutive threads) has its own barrier for the shuffles.
// __shared__ variables are function-local statics: one copy, used by the one block that runs at a
// time (launches are serialised by a mutex). Every barrier wait has a time limit: a thread that
// skips a __syncthreads (divergent barrier, undefined in CUDA) makes the launch fail with a message
// instead of hanging, and each block checks that all its threads passed the same number of
// barriers. Atomics are std::atomic_ref operations. Warp shuffles need the full warp (mask of every
// lane of the warp) and blockDim.x * blockDim.y * blockDim.z a multiple of 32.
#pragma once
#ifndef REFIMPL_EMULATE
#error "emulate.h is for host builds only (define REFIMPL_EMULATE)"
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <math.h>
#include <climits>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

// A reusable barrier with a time limit; after a timeout (or an abort) every wait returns at once.
// Arrivals count on an atomic; waiters sleep on the generation word with a futex (Linux), so a
// release wakes them without a mutex convoy. A waiter spins briefly (yielding) before sleeping.
class Barrier {
 public:
  void reset(unsigned n) { n_ = n; count_.store(0); gen_.store(0); }
  void wait();

 private:
  unsigned n_ = 1;
  std::atomic<unsigned> count_{0};
  std::atomic<int> gen_{0};
};

inline std::atomic<bool> g_abort{false};
inline std::mutex g_err_mutex;
inline std::string g_error;
inline double g_timeout_s = 20.0;

inline void fail(const std::string& msg) {
  std::lock_guard<std::mutex> lk(g_err_mutex);
  if (g_error.empty()) g_error = msg;
  g_abort = true;
}

inline void Barrier::wait() {
  if (g_abort) return;
  int gen = gen_.load(std::memory_order_acquire);
  if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
    count_.store(0, std::memory_order_relaxed);
    gen_.fetch_add(1, std::memory_order_acq_rel);
    syscall(SYS_futex, reinterpret_cast<int*>(&gen_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
    return;
  }
  for (int spin = 0; spin < 16; ++spin) {
    if (gen_.load(std::memory_order_acquire) != gen) return;
    std::this_thread::yield();
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(g_timeout_s);
  while (gen_.load(std::memory_order_acquire) == gen) {
    if (g_abort) return;
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds(0)) {
      fail("barrier timeout: not every thread of the block (or warp) reached the barrier "
           "(a __syncthreads or shuffle in divergent code?)");
      syscall(SYS_futex, reinterpret_cast<int*>(&gen_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
      return;
    }
    // sleep at most 100 ms at a time, so that an abort elsewhere is seen soon
    auto ns = std::min<long long>(std::chrono::duration_cast<std::chrono::nanoseconds>(left).count(), 100000000LL);
    struct timespec ts;
    ts.tv_sec = ns / 1000000000LL;
    ts.tv_nsec = ns % 1000000000LL;
    syscall(SYS_futex, reinterpret_cast<int*>(&gen_), FUTEX_WAIT_PRIVATE, gen, &ts, nullptr, 0);
  }
}

// Launch state: one launch at a time.
inline dim3 g_gridDim, g_blockDim, g_blockIdx;
inline thread_local dim3 t_threadIdx;
inline thread_local unsigned t_linear = 0;
inline thread_local unsigned long long t_syncs = 0;
inline thread_local unsigned long long t_shuffles = 0;
inline Barrier g_block_barrier;
inline std::vector<Barrier*> g_warp_barriers;
inline std::vector<unsigned long long> g_warp_scratch;  // 2 x 32 words per warp
inline std::vector<unsigned long long> g_sync_counts;
inline std::mutex g_launch_mutex;

inline void syncthreads() {
  ++t_syncs;
  g_block_barrier.wait();
}

inline unsigned warp_size_of(unsigned warp) {
  unsigned n = g_blockDim.x * g_blockDim.y * g_blockDim.z;
  return std::min(32u, n - 32u * warp);
}

// Exchange one 64-bit word inside the warp: every lane writes its value, then reads lane `src`.
inline unsigned long long warp_exchange(unsigned mask, unsigned long long v, int src) {
  unsigned warp = t_linear / 32, lane = t_linear % 32, n = warp_size_of(warp);
  unsigned full = n == 32 ? 0xffffffffu : ((1u << n) - 1u);
  if ((mask & full) != full) fail("warp shuffle with a partial mask: the emulator supports full warps only");
  // Two scratch rows used alternately: a lane writes row p of shuffle k + 1 only after every lane
  // passed the barrier of shuffle k, i.e. finished reading row p of shuffle k - 1. One barrier each.
  Barrier* b = g_warp_barriers[warp];
  unsigned p = (unsigned)(t_shuffles++ & 1u);
  unsigned long long* s = &g_warp_scratch[64 * warp + 32 * p];
  s[lane] = v;
  b->wait();
  return (src >= 0 && (unsigned)src < n) ? s[src] : v;
}

template <class T>
inline unsigned long long to_word(T v) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 64 bits");
  unsigned long long w = 0;
  std::memcpy(&w, &v, sizeof(T));
  return w;
}
template <class T>
inline T from_word(unsigned long long w) {
  T v;
  std::memcpy(&v, &w, sizeof(T));
  return v;
}

template <class... A, std::size_t... I>
inline void call_with(void (*f)(A...), void** p, std::index_sequence<I...>) {
  f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}

// Run kernel f over grid x block with its arguments packed as in cuLaunchKernel's kernelParams.
template <class... A>
inline int launch(void (*f)(A...), dim3 grid, dim3 block, void** params) {
  std::lock_guard<std::mutex> lk(g_launch_mutex);
  unsigned n = block.x * block.y * block.z;
  {
    std::lock_guard<std::mutex> e(g_err_mutex);
    g_error.clear();
  }
  g_abort = false;
  if (n == 0 || n > 1024 || n % 32 != 0) {
    fail("block size must be a multiple of 32 in [32, 1024], found " + std::to_string(n));
    return 1;
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return 0;
  g_gridDim = grid;
  g_blockDim = block;
  g_block_barrier.reset(n);
  unsigned nw = (n + 31) / 32;
  for (Barrier* b : g_warp_barriers) delete b;
  g_warp_barriers.clear();
  for (unsigned w = 0; w < nw; ++w) {
    g_warp_barriers.push_back(new Barrier());
    g_warp_barriers.back()->reset(warp_size_of(w));
  }
  g_warp_scratch.assign(64 * nw, 0);
  g_sync_counts.assign(n, 0);
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (unsigned t = 0; t < n; ++t) {
    threads.emplace_back([=]() {
      t_linear = t;
      t_shuffles = 0;
      t_threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
      for (unsigned bz = 0; bz < grid.z && !g_abort; ++bz)
        for (unsigned by = 0; by < grid.y && !g_abort; ++by)
          for (unsigned bx = 0; bx < grid.x && !g_abort; ++bx) {
            if (t == 0) g_blockIdx = dim3(bx, by, bz);
            g_block_barrier.wait();  // the block index is set before anyone reads it
            t_syncs = 0;
            call_with(f, params, std::index_sequence_for<A...>{});
            g_sync_counts[t] = t_syncs;
            g_block_barrier.wait();  // every thread finished this block
            if (t == 0) {
              for (unsigned u = 1; u < n; ++u)
                if (g_sync_counts[u] != g_sync_counts[0]) {
                  fail("threads of block (" + std::to_string(bx) + "," + std::to_string(by) + "," +
                       std::to_string(bz) + ") passed different numbers of __syncthreads (" +
                       std::to_string(g_sync_counts[0]) + " vs " + std::to_string(g_sync_counts[u]) +
                       " in thread " + std::to_string(u) + ")");
                  break;
                }
            }
            g_block_barrier.wait();  // the check is done before the next block starts
          }
    });
  }
  for (auto& th : threads) th.join();
  return g_abort ? 1 : 0;
}

}  // namespace emu

// ----------------------------------------------------------------------------- the CUDA names
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __constant__ static const
#define __restrict__ __restrict
#define threadIdx (emu::t_threadIdx)
#define blockIdx (emu::g_blockIdx)
#define blockDim (emu::g_blockDim)
#define gridDim (emu::g_gridDim)
#define warpSize 32

inline void __syncthreads() { emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp_exchange(0xffffffffu, 0, 0); }

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  int lane = emu::t_linear % 32;
  int s = (lane / width) * width + (src % width);
  return emu::from_word<T>(emu::warp_exchange(mask, emu::to_word(v), s));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32) {
  int lane = emu::t_linear % 32;
  int s = lane ^ lm;
  if (s / width != lane / width) s = lane;
  return emu::from_word<T>(emu::warp_exchange(mask, emu::to_word(v), s));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
  int lane = emu::t_linear % 32;
  int s = lane + (int)d;
  if (s / width != lane / width) s = lane;
  return emu::from_word<T>(emu::warp_exchange(mask, emu::to_word(v), s));
}

template <class T>
inline T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
template <class T>
inline T atomicMax(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {}
  return old;
}
template <class T>
inline T atomicMin(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (old > v && !a.compare_exchange_weak(old, v)) {}
  return old;
}
template <class T>
inline T atomicCAS(T* p, T cmp, T v) {
  std::atomic_ref<T>(*p).compare_exchange_strong(cmp, v);
  return cmp;
}
template <class T>
inline T atomicExch(T* p, T v) { return std::atomic_ref<T>(*p).exchange(v); }

inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline int __float_as_int(float f) { int u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
using std::min;
using std::max;

// EMU_EXPORT(k): a C entry point emu_k(grid, block, kernelParams) that ctypes calls.
#define EMU_EXPORT(name)                                                                             \
  extern "C" int emu_##name(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,         \
                            unsigned bz, void** params) {                                            \
    return emu::launch(&name, dim3(gx, gy, gz), dim3(bx, by, bz), params);                          \
  }

extern "C" const char* emu_last_error() { return emu::g_error.c_str(); }
extern "C" void emu_set_timeout(double s) { emu::g_timeout_s = s; }
