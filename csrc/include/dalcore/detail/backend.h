// The one place where the "GPU path" chooses its execution backend.
//
// csrc/cuda/*.cu are written on Thrust algorithms over DALCORE_HD functors. nvcc compiles them
// into _core (Thrust -> CUB on the caller's CUDA stream); the host compiler compiles the very
// same files into _core_omp with THRUST_DEVICE_SYSTEM=OMP, so their tests run without a GPU.
// Everything backend-specific (stream, policy, memory, reductions whose result must stay on the
// device) lives here, with one implementation per backend.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <thrust/execution_policy.h>
#include <thrust/reduce.h>

#include "dalcore/detail/tile.h"
#include "dalcore/status.h"

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#include <cub/device/device_reduce.cuh>
#include <thrust/system/cuda/execution_policy.h>
#else
#include <thrust/system/omp/execution_policy.h>
#endif

namespace dalcore::backend {

#if defined(__CUDACC__)

using stream_t = cudaStream_t;
inline constexpr const char* kName = "cuda";

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw CudaError(detail::concat(what, ": ", cudaGetErrorString(err)));
}
// After a kernel launch: reports launch errors without synchronising.
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

inline stream_t to_stream(std::uintptr_t handle) { return reinterpret_cast<stream_t>(handle); }

// Thrust's temporary storage (sorts, scans, count_if, reductions) from the stream-ordered pool
// (cudaMallocAsync / cudaFreeAsync on the caller's stream) instead of Thrust's default
// cudaMalloc / cudaFree, which synchronise the whole device on every call.
class stream_allocator {
 public:
  using value_type = char;
  explicit stream_allocator(stream_t s) : s_(s) {}
  char* allocate(std::ptrdiff_t bytes) {
    void* p = nullptr;
    check(cudaMallocAsync(&p, static_cast<std::size_t>(bytes), s_), "cudaMallocAsync (thrust)");
    return static_cast<char*>(p);
  }
  // Called from Thrust's temporary-buffer destructors: never throws (an error is left for the
  // next checked call to report).
  void deallocate(char* p, std::size_t) noexcept { (void)cudaFreeAsync(p, s_); }

 private:
  stream_t s_;
};

// Thrust on the caller's stream with the stream-ordered allocator, without the synchronisation
// Thrust adds after algorithms that do not return a value to the host. The allocator is held
// by value in the policy object.
inline auto policy(stream_t s) { return thrust::cuda::par_nosync(stream_allocator(s)).on(s); }

// Stream-ordered device memory (cudaMallocAsync / cudaFreeAsync), RAII, move-only.
template <class T>
class buffer {
 public:
  buffer() = default;
  buffer(std::size_t n, stream_t s) : n_(n), s_(s) {
    if (n_ > 0) {
      void* p = nullptr;
      check(cudaMallocAsync(&p, n_ * sizeof(T), s_), "cudaMallocAsync");
      p_ = static_cast<T*>(p);
    }
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  buffer(buffer&& o) noexcept { swap(o); }
  buffer& operator=(buffer&& o) noexcept {
    buffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~buffer() {
    if (p_) cudaFreeAsync(p_, s_);  // never throws from a destructor
  }
  T* data() noexcept { return p_; }
  const T* data() const noexcept { return p_; }
  std::size_t size() const noexcept { return n_; }

 private:
  void swap(buffer& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    std::swap(s_, o.s_);
  }
  T* p_ = nullptr;
  std::size_t n_ = 0;
  stream_t s_ = nullptr;
};

// Reduces [first, first + n) with op into *out (device memory) without a host round trip.
// CUB's order: use it for exact operations only (integer sums, the arg-max); a floating-point
// sum that must give the same bits on every device and in the twin goes through tile_reduce.
// `scratch` keeps CUB's temporary storage between calls (grown when needed).
template <class It, class T, class Op>
void reduce_into(stream_t s, buffer<unsigned char>& scratch, It first, std::int64_t n, T* out,
                 Op op, T init) {
  std::size_t bytes = 0;
  check(cub::DeviceReduce::Reduce(nullptr, bytes, first, out, n, op, init, s),
        "cub::DeviceReduce::Reduce (size)");
  if (scratch.size() < bytes) scratch = buffer<unsigned char>(bytes, s);
  check(cub::DeviceReduce::Reduce(scratch.data(), bytes, first, out, n, op, init, s),
        "cub::DeviceReduce::Reduce");
}

inline void copy_to_host(void* dst, const void* src, std::size_t bytes, stream_t s) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync D2H");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

inline void copy_to_device(void* dst, const void* src, std::size_t bytes, stream_t s) {
  // From pageable host memory: staged at once, no device synchronisation.
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync H2D");
}

// ---- Tile launches (see dalcore/detail/tile.h) -------------------------------------------
// Block b of a launch runs tiles [b kTilesPerBlock, (b + 1) kTilesPerBlock), one warp each.
inline constexpr int kTilesPerBlock = 8;

inline unsigned blocks_for(std::int64_t n_tiles) {
  const std::int64_t nb = (n_tiles + kTilesPerBlock - 1) / kTilesPerBlock;
  if (nb > 0x7fffffff) throw InvalidArgument("tile launch: too many tiles");
  return static_cast<unsigned>(nb);
}

template <class Body>
__global__ void __launch_bounds__(kTilesPerBlock * tile::kTileWidth)
    tiles_kernel(Body body, std::int64_t n_tiles) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * kTilesPerBlock +
                         threadIdx.x / tile::kTileWidth;
  if (t < n_tiles) body(tile::WarpTile{static_cast<int>(threadIdx.x % tile::kTileWidth)}, t);
}

// body(tile, t) for every tile t in [0, n_tiles): no order between tiles or blocks.
template <class Body>
void launch_tiles(stream_t s, std::int64_t n_tiles, const Body& body, const char* what) {
  if (n_tiles <= 0) return;
  tiles_kernel<<<blocks_for(n_tiles), kTilesPerBlock * tile::kTileWidth, 0, s>>>(body, n_tiles);
  check_launch(what);
}

// A load that bypasses L1 (data written by other blocks of the same launch).
template <class T>
__device__ T load_cg(const T* p) {
  static_assert(sizeof(T) % 4 == 0, "load_cg: T must be a whole number of 32-bit words");
  T r;
  const auto* src = reinterpret_cast<const unsigned*>(p);
  auto* dst = reinterpret_cast<unsigned*>(&r);
  for (unsigned k = 0; k < sizeof(T) / 4; ++k) dst[k] = __ldcg(src + k);
  return r;
}

// The fixed combine order of tile_reduce (shared with the twin, which runs the same steps):
//   block b: r_b = op(...op(op(init, body(t0)), body(t1))..., body(t7)), tiles past n_tiles
//     giving init, into partial[b];
//   the last block to finish (a ticket counter, reset for the next launch): lane l of its
//     first warp folds partial[l], partial[l + W], ... in order from init, then the butterfly.
template <class Body, class T, class Op>
__global__ void __launch_bounds__(kTilesPerBlock * tile::kTileWidth)
    tiles_reduce_kernel(Body body, std::int64_t n_tiles, Op op, T init, T* partial,
                        unsigned* ticket, T* out) {
  // Raw storage: T may have default member initialisers, which __shared__ variables cannot run.
  __shared__ alignas(T) unsigned char storage[kTilesPerBlock * sizeof(T)];
  T* tile_result = reinterpret_cast<T*>(storage);
  __shared__ bool last;
  const int w = static_cast<int>(threadIdx.x / tile::kTileWidth);
  const int lane = static_cast<int>(threadIdx.x % tile::kTileWidth);
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * kTilesPerBlock + w;
  T r = init;
  if (t < n_tiles) r = body(tile::WarpTile{lane}, t);
  if (lane == 0) tile_result[w] = r;
  __syncthreads();
  if (threadIdx.x == 0) {
    T b = init;
    for (int k = 0; k < kTilesPerBlock; ++k) b = op(b, tile_result[k]);
    partial[blockIdx.x] = b;
    __threadfence();
    last = atomicAdd(ticket, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last || w != 0) return;
  __threadfence();
  T acc = init;
  for (std::int64_t b = lane; b < gridDim.x; b += tile::kTileWidth) acc = op(acc, load_cg(partial + b));
  const tile::WarpTile tl{lane};
  const T res = tl.fold(typename tile::WarpTile::template Lanes<T>{acc}, op);
  if (lane == 0) {
    *out = res;
    *ticket = 0u;
  }
}

// Scratch of tile_reduce: the block partials and the ticket (zeroed once, then reset by every
// launch's last block).
template <class T>
struct ReduceScratch {
  buffer<T> partial;
  buffer<unsigned> ticket;
  ReduceScratch(std::int64_t max_tiles, stream_t s)
      : partial(blocks_for(max_tiles), s), ticket(1, s) {
    check(cudaMemsetAsync(ticket.data(), 0, sizeof(unsigned), s), "cudaMemsetAsync (ticket)");
  }
};

// *out = the ordered reduction of body(tile, t) over t in [0, n_tiles) (see tiles_reduce_kernel):
// one launch, no host synchronisation; the result stays in device memory.
template <class Body, class T, class Op>
void tile_reduce(stream_t s, std::int64_t n_tiles, const Body& body, Op op, T init,
                 ReduceScratch<T>& scratch, T* out, const char* what) {
  tiles_reduce_kernel<<<blocks_for(n_tiles), kTilesPerBlock * tile::kTileWidth, 0, s>>>(
      body, n_tiles, op, init, scratch.partial.data(), scratch.ticket.data(), out);
  check_launch(what);
}

// Runs enqueue(stream) once. With `capture` (and the caller's stream not already capturing),
// the work is captured on a private stream into a CUDA graph, which is then launched on s as
// one unit: one submission instead of one per kernel. No host synchronisation either way (the
// executable graph is freed by the driver when it completes).
template <class F>
void run_maybe_captured(stream_t s, bool capture, F&& enqueue) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(s, &status), "cudaStreamIsCapturing");
  if (!capture || status != cudaStreamCaptureStatusNone) {
    enqueue(s);
    return;
  }
  cudaStream_t cs = nullptr;
  check(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking), "cudaStreamCreate (capture)");
  cudaGraph_t graph = nullptr;
  check(cudaStreamBeginCapture(cs, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  try {
    enqueue(cs);
  } catch (...) {
    (void)cudaStreamEndCapture(cs, &graph);
    if (graph) (void)cudaGraphDestroy(graph);
    (void)cudaStreamDestroy(cs);
    throw;
  }
  cudaError_t err = cudaStreamEndCapture(cs, &graph);
  cudaGraphExec_t exec = nullptr;
  if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
  if (err == cudaSuccess) err = cudaGraphLaunch(exec, s);
  if (exec) (void)cudaGraphExecDestroy(exec);  // freed on completion when still in flight
  if (graph) (void)cudaGraphDestroy(graph);
  (void)cudaStreamDestroy(cs);
  check(err, "kcenter: CUDA graph of the pick loop");
}

#else  // Thrust's OpenMP backend: "device" memory is host memory.

using stream_t = void*;
inline constexpr const char* kName = "omp";

inline void check_launch(const char*) {}
inline stream_t to_stream(std::uintptr_t) { return nullptr; }
inline auto policy(stream_t) { return thrust::omp::par; }

// The poison a fresh twin buffer holds, so that a kernel reading memory it never wrote (which
// cudaMallocAsync leaves undefined on a GPU) fails the tests instead of reading zeros: NaN for
// floating point, 0xFF bytes for everything else (-1 for signed integers).
inline void poison(void* p, std::size_t bytes) {
  std::memset(p, 0xFF, bytes);
}
template <class T>
void poison(T* p, std::size_t n) {
  if constexpr (std::is_floating_point_v<T>) {
    std::fill(p, p + n, std::numeric_limits<T>::quiet_NaN());
  } else {
    poison(static_cast<void*>(p), n * sizeof(T));
  }
}

template <class T>
class buffer {
 public:
  buffer() = default;
  buffer(std::size_t n, stream_t) : v_(n) { poison(v_.data(), n); }
  T* data() noexcept { return v_.data(); }
  const T* data() const noexcept { return v_.data(); }
  std::size_t size() const noexcept { return v_.size(); }

 private:
  std::vector<T> v_;
};

template <class It, class T, class Op>
void reduce_into(stream_t, buffer<unsigned char>&, It first, std::int64_t n, T* out, Op op,
                 T init) {
  *out = thrust::reduce(thrust::omp::par, first, first + n, init, op);
}

inline void copy_to_host(void* dst, const void* src, std::size_t bytes, stream_t) {
  const auto* s = static_cast<const unsigned char*>(src);
  std::copy(s, s + bytes, static_cast<unsigned char*>(dst));
}

inline void copy_to_device(void* dst, const void* src, std::size_t bytes, stream_t) {
  const auto* p = static_cast<const unsigned char*>(src);
  std::copy(p, p + bytes, static_cast<unsigned char*>(dst));
}

// ---- Tile launches, emulated (see dalcore/detail/tile.h) ---------------------------------
// The same grid as on CUDA: block b runs tiles [b kTilesPerBlock, (b + 1) kTilesPerBlock), each
// tile's lanes emulated by tile::HostTile, and the same fixed combine order (tile_reduce).
//
// The order of the blocks is a test setting (launch_order()): `parallel` (the default) runs them
// on the OpenMP threads; `forward`, `reverse` and `shuffle` run them one after the other in that
// order. A GPU runs a launch's blocks in any order and concurrently, and orders two launches on
// a stream only one after the other. A kernel that reads in one launch what another block of
// the same launch writes (a missing split into two launches, a missing ticket or fence) gets
// different results under reverse or shuffled blocks, which the tests compare. What the order
// cannot show: races between the lanes of one tile (the twin runs them one after the other, in
// lane order, each for_lanes call completing before the next), a missing __syncthreads inside
// the launcher itself, memory-model problems (missing fences, stale L1 lines), and the order
// of Thrust algorithms, which run on Thrust's own OpenMP schedule.
inline constexpr int kTilesPerBlock = 8;

enum class LaunchOrder { parallel, forward, reverse, shuffle };
struct LaunchOrderSetting {
  LaunchOrder order = LaunchOrder::parallel;
  std::uint64_t seed = 0;
};
// The initial setting comes from DALCORE_TWIN_LAUNCH_ORDER (forward, reverse or shuffle), so
// that a whole test run can use it: DALCORE_TWIN_LAUNCH_ORDER=reverse pytest python_tests/...
inline LaunchOrderSetting initial_launch_order() {
  LaunchOrderSetting s;
  const char* env = std::getenv("DALCORE_TWIN_LAUNCH_ORDER");
  if (env == nullptr) return s;
  if (std::strcmp(env, "forward") == 0) s.order = LaunchOrder::forward;
  if (std::strcmp(env, "reverse") == 0) s.order = LaunchOrder::reverse;
  if (std::strcmp(env, "shuffle") == 0) s.order = LaunchOrder::shuffle;
  return s;
}
inline LaunchOrderSetting& launch_order() {
  static LaunchOrderSetting setting = initial_launch_order();
  return setting;
}

inline std::int64_t blocks_for(std::int64_t n_tiles) {
  return (n_tiles + kTilesPerBlock - 1) / kTilesPerBlock;
}

// The blocks of one launch in the order of the setting (each shuffled launch draws a new
// permutation: splitmix64 from the seed and a launch counter).
inline std::vector<std::int64_t> block_sequence(std::int64_t nb) {
  std::vector<std::int64_t> seq(static_cast<std::size_t>(nb));
  for (std::int64_t b = 0; b < nb; ++b) seq[static_cast<std::size_t>(b)] = b;
  LaunchOrderSetting& set = launch_order();
  if (set.order == LaunchOrder::reverse) std::reverse(seq.begin(), seq.end());
  if (set.order == LaunchOrder::shuffle) {
    std::uint64_t state = set.seed++;
    for (std::int64_t b = nb - 1; b > 0; --b) {
      std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      std::swap(seq[static_cast<std::size_t>(b)],
                seq[static_cast<std::size_t>(z % static_cast<std::uint64_t>(b + 1))]);
    }
  }
  return seq;
}

// block(b) for every block, in the setting's order (bodies never throw: device code).
template <class Block>
void for_blocks(std::int64_t nb, const Block& block) {
  if (launch_order().order == LaunchOrder::parallel) {
#pragma omp parallel for schedule(static)
    for (std::int64_t b = 0; b < nb; ++b) block(b);
    return;
  }
  for (const std::int64_t b : block_sequence(nb)) block(b);
}

template <class Body>
void launch_tiles(stream_t, std::int64_t n_tiles, const Body& body, const char*) {
  if (n_tiles <= 0) return;
  for_blocks(blocks_for(n_tiles), [&](std::int64_t b) {
    const std::int64_t t1 = std::min(n_tiles, (b + 1) * kTilesPerBlock);
    for (std::int64_t t = b * kTilesPerBlock; t < t1; ++t) body(tile::HostTile{}, t);
  });
}

template <class T>
struct ReduceScratch {
  buffer<T> partial;
  ReduceScratch(std::int64_t max_tiles, stream_t s)
      : partial(static_cast<std::size_t>(blocks_for(max_tiles)), s) {}
};

template <class Body, class T, class Op>
void tile_reduce(stream_t, std::int64_t n_tiles, const Body& body, Op op, T init,
                 ReduceScratch<T>& scratch, T* out, const char*) {
  const std::int64_t nb = blocks_for(n_tiles);
  T* partial = scratch.partial.data();
  for_blocks(nb, [&](std::int64_t b) {
    T r = init;
    for (std::int64_t t = b * kTilesPerBlock; t < (b + 1) * kTilesPerBlock; ++t)
      r = op(r, t < n_tiles ? body(tile::HostTile{}, t) : init);
    partial[b] = r;
  });
  const tile::HostTile tl;
  auto acc = tile::HostTile::fill(init);
  for (int l = 0; l < tile::kTileWidth; ++l)
    for (std::int64_t b = l; b < nb; b += tile::kTileWidth) acc[l] = op(acc[l], partial[b]);
  *out = tl.fold(acc, op);
}

template <class F>
void run_maybe_captured(stream_t s, bool, F&& enqueue) {
  enqueue(s);
}

#endif

}  // namespace dalcore::backend
