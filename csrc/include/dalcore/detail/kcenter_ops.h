// Arithmetic of greedy k-center shared by the CPU kernel (csrc/cpu/kcenter.cpp) and the GPU
// path (csrc/cuda/kcenter.cu, compiled by nvcc and by the host compiler on Thrust/OpenMP).
//
// Distances are kept squared (the arg-max of d^2 is the arg-max of d) and computed as the sum
// of squared differences, not as |x|^2 + |c|^2 - 2 x.c: the same memory traffic (one read of
// the row), no cancellation for points close to each other or far from the origin, and exact
// zeros for duplicates, which keeps ties (lowest index wins) and the pruning bound exact.
//
// Centres (labeled points and picks) carry the min-distance sentinel kCenter (< 0): they are
// never updated and never chosen.
#pragma once

#include <cstdint>

#include "dalcore/detail/hd.h"

namespace dalcore::kcenter_ops {

inline constexpr float kCenter = -1.0f;
// Rows per block of the column sums of the mean (fixed: the mean does not depend on threads).
inline constexpr std::int64_t kMeanBlock = 1024;

// A candidate of the arg-max: its squared min-distance and its index (-1: none).
struct ArgMax {
  float value;
  std::int64_t index;
};

DALCORE_HD ArgMax argmax_none() { return ArgMax{-2.0f, -1}; }

// True when a beats b: larger value, ties to the lower index (a missing candidate never wins).
DALCORE_HD bool beats(const ArgMax& a, const ArgMax& b) {
  if (a.index < 0) return false;
  if (b.index < 0) return true;
  return a.value > b.value || (a.value == b.value && a.index < b.index);
}

// Associative, commutative arg-max with lowest-index tie-break (a Thrust/CUB reduction op).
struct ArgMaxOp {
  DALCORE_HD ArgMax operator()(const ArgMax& a, const ArgMax& b) const {
    return beats(b, a) ? b : a;
  }
};

// Squared Euclidean distance between two rows of length d. Sixteen independent partial sums (one
// 512-bit vector, two 256-bit ones, ...): the compiler vectorises the fixed-width inner loop for
// whatever ISA the caller is compiled for, and the association order, hence the rounding, is the
// same for every ISA.
inline constexpr int kLanes = 16;  // the fold below assumes 16

DALCORE_HD float sq_dist(const float* a, const float* b, std::int64_t d) {
  float acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = 0.0f;
  std::int64_t k = 0;
  for (; k + kLanes <= d; k += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float t = a[k + l] - b[k + l];
      acc[l] += t * t;
    }
  }
  for (int l = 0; k < d; ++k, ++l) {
    const float t = a[k] - b[k];
    acc[l] += t * t;
  }
  // Pairwise fold with constant trip counts (unrolled and vectorised by the compiler).
  for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
  for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
  for (int l = 0; l < 2; ++l) acc[l] += acc[l + 2];
  return acc[0] + acc[1];
}

// |a|^2 summed as sq_dist sums (16 lanes, the same fold): for the callers whose bounds hold for
// any summation order (one chain of d dependent adds would cost d add latencies per row).
DALCORE_HD float sq_norm(const float* a, std::int64_t d) {
  float acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = 0.0f;
  std::int64_t k = 0;
  for (; k + kLanes <= d; k += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[k + l] * a[k + l];
  for (int l = 0; k < d; ++k, ++l) acc[l] += a[k] * a[k];
  for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
  for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
  for (int l = 0; l < 2; ++l) acc[l] += acc[l + 2];
  return acc[0] + acc[1];
}

// Four floats read at once (16-byte aligned rows, d % 4 == 0): vector loads on the GPU.
struct alignas(16) Float4 {
  float x, y, z, w;
};

DALCORE_HD float sq_dist4(const float* a, const float* b, std::int64_t d) {
  const Float4* a4 = reinterpret_cast<const Float4*>(a);
  const Float4* b4 = reinterpret_cast<const Float4*>(b);
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
  for (std::int64_t k = 0; k < d / 4; ++k) {
    const Float4 u = a4[k];
    const Float4 v = b4[k];
    const float t0 = u.x - v.x, t1 = u.y - v.y, t2 = u.z - v.z, t3 = u.w - v.w;
    s0 += t0 * t0;
    s1 += t1 * t1;
    s2 += t2 * t2;
    s3 += t3 * t3;
  }
  return (s0 + s1) + (s2 + s3);
}

// One point's step of a pick: its min-distance after centre c (the point itself when i == c)
// has been added. Returns the new min-distance (kCenter for centres).
DALCORE_HD float update_min(float current, float dist_to_c, bool is_c) {
  if (is_c) return kCenter;
  return dist_to_c < current ? dist_to_c : current;
}

// Pruning test (triangle inequality): no point of a group whose centre a lies at squared
// distance dac2 from the new centre c, and whose largest squared min-distance is r2, can get
// closer to c than to a when d(a, c) >= 2 r. A relative margin keeps the test conservative
// against float rounding, so that the pruned and unpruned paths produce the same min-distances.
DALCORE_HD bool group_unaffected(float dac2, float r2) {
  return dac2 >= 4.0f * r2 * (1.0f + 1e-3f) + 1e-30f;
}

}  // namespace dalcore::kcenter_ops
