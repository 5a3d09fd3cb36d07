// Per-row arithmetic of knn_graph shared by the CPU kernel (csrc/cpu/graph.cpp) and the Thrust
// GPU path (csrc/cuda/graph.cu). Neighbour lists are rows of `col` (sorted ascending by index,
// possibly holding the row itself, which is skipped) with directed weights `w` alongside.
#pragma once

#include <cmath>
#include <cstdint>

#include "dalcore/detail/hd.h"

namespace dalcore::detail {

// false for NaN and +-inf (x - x is NaN for both), without <cmath> classification calls.
DALCORE_HD bool finite_value(float x) { return (x - x) == 0.0f; }

// Directed edge weight a = max(0, s)^gamma, computed in double.
DALCORE_HD float edge_weight(float s, double gamma) {
  return s > 0.0f ? static_cast<float>(::pow(static_cast<double>(s), gamma)) : 0.0f;
}

// Position of `target` in the sorted col[lo, hi), or -1.
template <class C>
DALCORE_HD std::int64_t find_sorted(const C* col, std::int64_t lo, std::int64_t hi, C target) {
  const std::int64_t end = hi;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (col[mid] < target)
      lo = mid + 1;
    else
      hi = mid;
  }
  return (lo < end && col[lo] == target) ? lo : -1;
}

// Reciprocal mode, row i of fixed-width lists (k per row): for each listed j != i that lists i
// back, wsym = (a_ij + a_ji) / 2 (IEEE addition commutes: exactly symmetric), else 0.
// Returns the number of stored (positive) entries of row i.
template <class C>
DALCORE_HD std::int64_t reciprocal_row(std::int64_t i, std::int64_t k, const C* col, const float* w,
                                       float* wsym) {
  std::int64_t count = 0;
  const std::int64_t lo = i * k, hi = lo + k;
  for (std::int64_t e = lo; e < hi; ++e) {
    const std::int64_t j = static_cast<std::int64_t>(col[e]);
    float ws = 0.0f;
    if (j != i) {
      const std::int64_t p = find_sorted(col, j * k, j * k + k, static_cast<C>(i));
      if (p >= 0) ws = static_cast<float>(0.5 * (static_cast<double>(w[e]) + w[p]));
    }
    wsym[e] = ws;
    count += ws > 0.0f ? 1 : 0;
  }
  return count;
}

// Union mode, row i: merge of list(i) (cols a_col[a_lo, a_hi), weights a_ij) and the transposed
// list (sources b_col[b_lo, b_hi) that list i, weights a_ji); w_ij = a_ij + a_ji (a missing
// direction counts 0). Calls emit(j, w) in increasing j for every w > 0, skipping j == i.
template <class C, class Emit>
DALCORE_HD void union_row(std::int64_t i, const C* a_col, const float* a_w, std::int64_t a_lo,
                          std::int64_t a_hi, const C* b_col, const float* b_w, std::int64_t b_lo,
                          std::int64_t b_hi, Emit& emit) {
  std::int64_t p = a_lo, q = b_lo;
  while (p < a_hi || q < b_hi) {
    const bool take_a = p < a_hi && (q >= b_hi || a_col[p] <= b_col[q]);
    const bool take_b = q < b_hi && (p >= a_hi || b_col[q] <= a_col[p]);
    const std::int64_t j = static_cast<std::int64_t>(take_a ? a_col[p] : b_col[q]);
    float v;
    if (take_a && take_b) {
      // (i, j) and (j, i) add the same two floats (IEEE addition commutes): exactly symmetric.
      v = static_cast<float>(static_cast<double>(a_w[p]) + b_w[q]);
    } else {
      v = take_a ? a_w[p] : b_w[q];
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

// Emitters for union_row: count the entries of a row, or write them and sum the degree.
struct CountEmit {
  std::int64_t n = 0;
  template <class J>
  DALCORE_HD void operator()(J, float) { ++n; }
};

struct FillEmit {
  std::int32_t* indices;
  float* data;
  std::int64_t pos;
  double degree = 0.0;
  DALCORE_HD FillEmit(std::int32_t* ind, float* dat, std::int64_t start)
      : indices(ind), data(dat), pos(start) {}
  DALCORE_HD void operator()(std::int64_t j, float v) {
    indices[pos] = static_cast<std::int32_t>(j);
    data[pos] = v;
    ++pos;
    degree += v;
  }
};

}  // namespace dalcore::detail
