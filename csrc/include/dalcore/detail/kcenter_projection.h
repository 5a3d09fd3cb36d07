// Projection lower bound of greedy k-center (csrc/cpu/kcenter_projection.cpp).
//
// z_i ~ P (x_i - mu), the pool's projection on m (<< d) orthonormal directions (the top principal
// directions, computed by dalcore/_kcenter.py in float64; P and mu are used rounded to float32,
// and the orthonormality defect of the rounded P is measured), computed here in float32 and
// stored beside the features.
// For P with orthonormal rows |P (x_i - x_c)| <= |x_i - x_c|, so the m-dimensional distance is a
// lower bound of the full one: a pick reads z for every point and the full row only where the
// bound cannot exclude an update. The bound accounts for every rounding (ProjectionBound below),
// so a skipped point provably keeps its min-distance: picks and min-distances are bit-identical
// to the plain pass.
#pragma once

#include <cstdint>
#include <vector>

#include "dalcore/detail/kcenter_ops.h"

namespace dalcore::cpu::projection {

// The m-dimensional copy and what the test needs. eps[i] bounds |z_i - P (x_i - mu)| (the
// rounding of the centring and of the product); factor covers the rest (see skip()).
struct ProjectionBound {
  std::vector<float> z;  // N x m, row-major
  std::int64_t m = 0;
  std::vector<float> eps;  // N
  float factor = 0.0f;
  float abs_slack = 0.0f;  // absolute error of a full squared distance (underflow of its terms)
  float abs_q = 0.0f;      // the same for the projected one
};

// Validates the basis (m x d float64; rounded to float32 its rows must be nearly orthonormal:
// delta = ||P P^T - I||_F < 1/4) and the mean, computes the projections z of the rows of x
// (N x d), their error radii and the factor. Throws InvalidArgument naming the argument on a
// bad basis.
ProjectionBound make_bound(const float* x, std::int64_t n, std::int64_t d, const double* basis,
                           const double* mean, std::int64_t m);

// True when the projection proves that centre c cannot lower point i's min-distance mi:
// the float32 sq_dist of x_i and x_c is then >= mi, so the plain pass would keep mi as well.
// Derivation (u = 2^-24; sums of non-negative terms; the kcenter sources are compiled with
// -ffp-contract=off, so sq_dist rounds each difference, square and sum on its own: 3 roundings
// per term, ceil(n / 16) lane sums and 4 folds, g_n = (n + 8) 2u covers them, and an FMA would
// only round less): q = fl(|z_i - z_c|^2) <= (1 + g_m) |z_i - z_c|^2; |z_i - z_c| <= |P (x_i - x_c)| + e, e = eps_i + eps_c; |P v| <= sqrt(1 + delta) |v|;
// fl(|x_i - x_c|^2) >= (1 - g_d) |x_i - x_c|^2 - abs_slack, and q may exceed its bound by abs_q
// (subnormal terms). Hence fl(|x_i - x_c|^2) >= mi as soon
// as q >= F (sqrt(mi + abs_slack) + e)^2 + abs_q with F = (1 + g_m)(1 + delta)/(1 - g_d); `factor` is F
// rounded up with room for the float rounding of the right-hand side (a few ulps).
[[gnu::always_inline]] inline bool skip(float q, float mi, float eps_i, float eps_c,
                                        float factor, float abs_slack, float abs_q) {
  const float r = __builtin_sqrtf(mi + abs_slack) + (eps_i + eps_c);
  return q >= factor * (r * r) + abs_q;
}

// Counts of one pass: rows whose full features were read, rows whose projection was read.
struct ReadCount {
  std::int64_t full = 0, projected = 0;
};

// Rows [begin, end): add centre c to min_d through the bound (full row read only where it
// cannot exclude an update), return the arg-max of min_d there (lowest index on ties).
kcenter_ops::ArgMax projected_rows(const float* x, std::int64_t d, const ProjectionBound& pb,
                                   std::int64_t begin, std::int64_t end, std::int64_t c,
                                   float* min_d, ReadCount& count);

}  // namespace dalcore::cpu::projection
