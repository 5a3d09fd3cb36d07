// Tiles of lanes: the unit of work of the hand-written GPU-path kernels (csrc/cuda/kcenter.cu),
// written once and run both as CUDA warps and, lane by lane, on the host (the OpenMP twin).
//
// A kernel body is a functor `body(tile, t)` over tile indices t. A tile has kTileWidth lanes:
//   - on a CUDA device (WarpTile) each lane is a thread of one warp; a Lanes<T> value holds the
//     thread's own lane, for_lanes(f) calls f(own lane), sum/fold exchange values with
//     __shfl_xor_sync;
//   - on the host (HostTile) a Lanes<T> value is an array of kTileWidth values, for_lanes(f)
//     calls f(0), f(1), ..., f(W - 1) in turn, and sum/fold run the same butterfly on the array.
// The butterfly is the same on both: at each level (offsets W/2, W/4, ..., 1) lane l combines
// its value with lane l ^ offset's as op(own, partner). Floating-point addition and the arg-max
// are commutative, so every lane ends with the same bits, and a result is bit-identical between
// the GPU and the twin whatever the number of OpenMP threads (the twin only has to follow the
// lanes' own order: lane l accumulates columns l, l + W, l + 2W, ... in increasing order).
//
// Arithmetic that must round the same on both sides goes through sub_rn / mul_rn / add_rn: on the
// device the _rn intrinsics, which nvcc never contracts into an FMA; on the host plain operators,
// with the twin compiled with -ffp-contract=off (CMakeLists.txt).
#pragma once

#include <cstdint>

#include "dalcore/detail/hd.h"

namespace dalcore::tile {

inline constexpr int kTileWidth = 32;  // lanes per tile: one warp

DALCORE_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
DALCORE_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DALCORE_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// The host emulation of a tile: every lane in turn, values as arrays.
struct HostTile {
  static constexpr int kWidth = kTileWidth;
  template <class T>
  struct Lanes {
    T v[kWidth];
    T& operator[](int l) { return v[l]; }
    const T& operator[](int l) const { return v[l]; }
  };
  template <class T>
  static Lanes<T> fill(const T& x) {
    Lanes<T> a;
    for (int l = 0; l < kWidth; ++l) a.v[l] = x;
    return a;
  }
  template <class F>
  void for_lanes(F&& f) const {
    for (int l = 0; l < kWidth; ++l) f(l);
  }
  // The butterfly of WarpTile::fold, on the array; returns lane 0's (every lane's) result.
  template <class T, class Op>
  T fold(Lanes<T> a, const Op& op) const {
    for (int off = kWidth / 2; off >= 1; off /= 2) {
      Lanes<T> b;
      for (int l = 0; l < kWidth; ++l) b.v[l] = op(a.v[l], a.v[l ^ off]);
      a = b;
    }
    return a.v[0];
  }
  // True in the one lane that writes a tile's shared result (all of them on the host: a loop).
  bool leader() const { return true; }
  // Orders the lanes' earlier reads before the leader's writes (on the host: program order).
  void sync() const {}
};

struct AddRn {
  DALCORE_HD float operator()(float a, float b) const { return add_rn(a, b); }
};

#if defined(__CUDACC__)
// One warp. Only device code creates it (the launcher in backend.h).
struct WarpTile {
  static constexpr int kWidth = kTileWidth;
  int lane;
  template <class T>
  struct Lanes {
    T v;
    __device__ T& operator[](int) { return v; }
    __device__ const T& operator[](int) const { return v; }
  };
  template <class T>
  __device__ static Lanes<T> fill(const T& x) {
    return Lanes<T>{x};
  }
  template <class F>
  __device__ void for_lanes(F&& f) const {
    f(lane);
  }
  template <class T, class Op>
  __device__ T fold(Lanes<T> a, const Op& op) const {
    for (int off = kWidth / 2; off >= 1; off /= 2) a.v = op(a.v, shfl_xor(a.v, off));
    return a.v;
  }
  __device__ bool leader() const { return lane == 0; }
  __device__ void sync() const { __syncwarp(); }

 private:
  __device__ static float shfl_xor(float v, int off) {
    return __shfl_xor_sync(0xffffffffu, v, off, kWidth);
  }
  __device__ static std::int64_t shfl_xor(std::int64_t v, int off) {
    return __shfl_xor_sync(0xffffffffu, static_cast<long long>(v), off, kWidth);
  }
  template <class T>
  __device__ static T shfl_xor(const T& v, int off) {  // any struct: word by word
    static_assert(sizeof(T) % 4 == 0, "shfl_xor: T must be a whole number of 32-bit words");
    T r;
    const auto* src = reinterpret_cast<const unsigned*>(&v);
    auto* dst = reinterpret_cast<unsigned*>(&r);
    for (unsigned k = 0; k < sizeof(T) / 4; ++k)
      dst[k] = __shfl_xor_sync(0xffffffffu, src[k], off, kWidth);
    return r;
  }
};
#endif

// Squared Euclidean distance of two rows of length d, in the tile's order: lane l sums the
// squared differences of columns l, l + W, ... (coalesced: the lanes read W consecutive
// floats at a time), then the butterfly adds the W lane sums.
template <class Tile>
DALCORE_HD float sq_dist(const Tile& t, const float* a, const float* b, std::int64_t d) {
  auto acc = Tile::fill(0.0f);
  constexpr int W = Tile::kWidth;
  std::int64_t k0 = 0;
  for (; k0 + W <= d; k0 += W)
    t.for_lanes([&](int l) {
      const float u = sub_rn(a[k0 + l], b[k0 + l]);
      acc[l] = add_rn(acc[l], mul_rn(u, u));
    });
  if (k0 < d)
    t.for_lanes([&](int l) {
      if (k0 + l < d) {
        const float u = sub_rn(a[k0 + l], b[k0 + l]);
        acc[l] = add_rn(acc[l], mul_rn(u, u));
      }
    });
  return t.fold(acc, AddRn{});
}

// *p = min(*p, v) for non-negative floats (whose bit patterns order as int32), atomically: the
// result does not depend on the order of the updates. A negative *p (a centre's sentinel) stays.
DALCORE_HD void atomic_min_nonneg(float* p, float v) {
#if defined(__CUDA_ARCH__)
  atomicMin(reinterpret_cast<int*>(p), __float_as_int(v));
#else
  int* q = reinterpret_cast<int*>(p);
  int want;
  __builtin_memcpy(&want, &v, sizeof want);
  int cur = __atomic_load_n(q, __ATOMIC_RELAXED);
  while (want < cur &&
         !__atomic_compare_exchange_n(q, &cur, want, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
#endif
}

}  // namespace dalcore::tile
