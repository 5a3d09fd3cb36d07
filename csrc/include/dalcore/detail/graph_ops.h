// Per-row arithmetic of knn_graph: the edge weight, the degree scale and the normalisation are
// shared by the CPU kernel (csrc/cpu/graph.cpp) and the Thrust GPU path (csrc/cuda/graph.cu); the
// merge of a row with its transposed list (merge_row) is the GPU path's. The CPU kernel merges
// with branch-free loops of its own (two interleaved halves per row) that take the same union /
// reciprocal rules. Neighbour lists are rows of `col` (sorted
// ascending by index, possibly holding the row itself, which is skipped) with weights alongside.
#pragma once

#include <cmath>
#include <cstdint>

#include "dalcore/detail/hd.h"

namespace dalcore::detail {

// faiss's "no neighbour" index (k larger than what the index can return): an absent entry,
// skipped like a self entry by both paths; its similarity is not read.
inline constexpr std::int64_t kMissingNeighbour = -1;

// false for NaN and +-inf (x - x is NaN for both), without <cmath> classification calls.
DALCORE_HD bool finite_value(float x) { return (x - x) == 0.0f; }

// Directed edge weight a = max(0, s)^gamma, computed in double (by repeated squaring when gamma
// is a small integer, the usual 3: exact to double rounding and much cheaper than pow).
DALCORE_HD float edge_weight(float s, double gamma) {
  if (!(s > 0.0f)) return 0.0f;
  const double x = static_cast<double>(s);
  if (gamma <= 64.0 && gamma == static_cast<double>(static_cast<int>(gamma))) {
    int e = static_cast<int>(gamma);
    double base = x, r = 1.0;
    while (e > 0) {
      if (e & 1) r *= base;
      base *= base;
      e >>= 1;
    }
    return static_cast<float>(r);
  }
  return static_cast<float>(::pow(x, gamma));
}

// A neighbour list as parallel arrays (the GPU path).
template <class C>
struct SplitList {
  const C* c;
  const float* v;
  DALCORE_HD std::int64_t col(std::int64_t p) const { return static_cast<std::int64_t>(c[p]); }
  DALCORE_HD float w(std::int64_t p) const { return v[p]; }
};

// Row i of the graph from two lists sorted by index: list(i) (a[a_lo, a_hi), weights a_ij) and
// the transposed list (b[b_lo, b_hi): the j that list i, weights a_ji).
//   mutual == false (union):      w_ij = a_ij + a_ji, a missing direction counting 0;
//   mutual == true  (reciprocal): only j in both lists, w_ij = (a_ij + a_ji) / 2.
// (i, j) and (j, i) add the same two floats and IEEE addition commutes: S is exactly symmetric.
// Calls emit(j, w) in increasing j for every w > 0, skipping j == i (self entries).
template <class A, class B, class Emit>
DALCORE_HD void merge_row(std::int64_t i, bool mutual, const A& a, std::int64_t a_lo,
                          std::int64_t a_hi, const B& b, std::int64_t b_lo, std::int64_t b_hi,
                          Emit& emit) {
  std::int64_t p = a_lo, q = b_lo;
  while (p < a_hi || q < b_hi) {
    const std::int64_t ja = p < a_hi ? a.col(p) : -1;
    const std::int64_t jb = q < b_hi ? b.col(q) : -1;
    const bool take_a = p < a_hi && (q >= b_hi || ja <= jb);
    const bool take_b = q < b_hi && (p >= a_hi || jb <= ja);
    const std::int64_t j = take_a ? ja : jb;
    float v = 0.0f;
    if (take_a && take_b) {
      const double sum = static_cast<double>(a.w(p)) + static_cast<double>(b.w(q));
      v = static_cast<float>(mutual ? 0.5 * sum : sum);
    } else if (!mutual) {
      v = take_a ? a.w(p) : b.w(q);
    }
    p += take_a ? 1 : 0;
    q += take_b ? 1 : 0;
    if (j != i && v > 0.0f) emit(j, v);
  }
}

DALCORE_HD double inv_sqrt_degree(double d) { return d > 0.0 ? 1.0 / ::sqrt(d) : 0.0; }

// S_ij = w_ij d_i^-1/2 d_j^-1/2; the product of the two scales is commutative, so S is symmetric.
DALCORE_HD float normalised(float w, double dinv_i, double dinv_j) {
  return static_cast<float>(static_cast<double>(w) * (dinv_i * dinv_j));
}

// Emitters for merge_row. Count pass: the row's length and degree d_i = sum_j w_ij (double).
struct CountEmit {
  std::int64_t n = 0;
  double degree = 0.0;
  DALCORE_HD void operator()(std::int64_t, float v) {
    ++n;
    degree += v;
  }
};

// Fill pass: writes column j and S_ij = w_ij d_i^-1/2 d_j^-1/2 from the count pass's dinv.
// Never writes at or past `cap` (the outputs' length), whatever the offsets say.
struct FillEmit {
  std::int32_t* indices;
  float* data;
  std::int64_t pos;
  const double* dinv;
  double dinv_i;
  std::int64_t cap;
  DALCORE_HD void operator()(std::int64_t j, float v) {
    if (pos < cap) {
      indices[pos] = static_cast<std::int32_t>(j);
      data[pos] = normalised(v, dinv_i, dinv[j]);
    }
    ++pos;
  }
};

}  // namespace dalcore::detail
