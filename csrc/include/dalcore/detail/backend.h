// The one place where the "GPU path" chooses its execution backend.
//
// csrc/cuda/*.cu are written on Thrust algorithms over DALCORE_HD functors. nvcc compiles them
// into _core (Thrust -> CUB on the caller's CUDA stream); the host compiler compiles the very
// same files into _core_omp with THRUST_DEVICE_SYSTEM=OMP, so their tests run without a GPU.
// Everything backend-specific (stream, policy, memory, reductions whose result must stay on the
// device) lives here, with one implementation per backend.
#pragma once

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <thrust/execution_policy.h>
#include <thrust/reduce.h>

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

#endif

}  // namespace dalcore::backend
