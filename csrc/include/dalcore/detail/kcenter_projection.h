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
  std::vector<float> z;  // N x stride, row-major: m values, then zeros up to the stride
  std::int64_t m = 0;
  std::int64_t stride = 0;  // m rounded up to a multiple of 16 (one 64-byte vector per 16)
  std::vector<float> eps;  // N
  float factor = 0.0f;
  float abs_slack = 0.0f;  // absolute error of a full squared distance (underflow of its terms)
  float abs_q = 0.0f;      // the same for the projected one
  // The coarse copy (the full passes' first test, see coarse_skip below): z rounded to integers
  // in units of one power of two s, k_i = nearbyint(z_i / s) in [-127, 127], N x stride int8
  // (empty: no coarse copy, every row takes the float32 test).
  std::vector<std::int8_t> k8;
  float s2 = 0.0f;       // s^2, exactly
  float h = 0.0f;        // >= |s k_i - z_i| for every i
  float eps_max = 0.0f;  // >= max_i eps_i + h
};


// Validates the basis (m x d float64; rounded to float32 its rows must be nearly orthonormal:
// delta = ||P P^T - I||_F < 1/4) and the mean, computes the projections z of the rows of x
// (N x d), their error radii and the factor. Throws InvalidArgument naming the argument on a
// bad basis.
ProjectionBound make_bound(const float* x, std::int64_t n, std::int64_t d, const double* basis,
                           const double* mean, std::int64_t m);

// True when the projection proves that centre c cannot lower point i's min-distance mi:
// the float32 sq_dist of x_i and x_c is then >= mi, so the plain pass would keep mi as well.
// q is the squared distance of two z rows over the whole stride (the zero padding adds exact
// zeros), summed in any order (sq_dist's 16 lanes, or projected_rows' transposed tree).
// Derivation (u = 2^-24; sums of non-negative terms; the kcenter sources are compiled with
// -ffp-contract=off, so sq_dist rounds each difference, square and sum on its own: 3 roundings
// per term, ceil(n / 16) lane sums and 4 folds, g_n = (n + 8) 2u covers them, and an FMA would
// only round less; for q, any summation order of its n = stride terms rounds each term's
// difference and square once and adds at most n - 1 roundings along any path of the sum tree,
// (n + 1) u in all, within g_n as well): q = fl(|z_i - z_c|^2) <= (1 + g_m) |z_i - z_c|^2
// (g_m with m = stride); |z_i - z_c| <= |P (x_i - x_c)| + e, e = eps_i + eps_c; |P v| <= sqrt(1 + delta) |v|;
// fl(|x_i - x_c|^2) >= (1 - g_d) |x_i - x_c|^2 - abs_slack, and q may exceed its bound by abs_q
// (subnormal terms). Hence fl(|x_i - x_c|^2) >= mi as soon
// as q >= F (sqrt(mi + abs_slack) + e)^2 + abs_q with F = (1 + g_m)(1 + delta)/(1 - g_d); `factor` is F
// rounded up with room for the float rounding of the right-hand side (a few ulps).
[[gnu::always_inline]] inline bool skip(float q, float mi, float eps_i, float eps_c,
                                        float factor, float abs_slack, float abs_q) {
  const float r = __builtin_sqrtf(mi + abs_slack) + (eps_i + eps_c);
  return q >= factor * (r * r) + abs_q;
}

// The coarse test (int8 copy). k_i = nearbyint(z_i / s) with z_i / s exact (s a power of
// two; a subnormal quotient is off by at most 2^-149), so w_i = s k_i is within
// h = 0.5 s sqrt(stride) (1 + 2^-20) of z_i and Z = |z_i - z_c| >= W - 2h, W = |w_i - w_c|.
// K = |k_i - k_c|^2 is summed exactly in integers (at most 32 * 254^2 < 2^24: exact as a float
// too), and q8 = fl(K s^2) <= W^2 (exact, or rounded toward 0 on underflow; inf only when W^2
// exceeds FLT_MAX, above any finite threshold). With R = sqrt(mi + abs_slack), e = eps_i +
// eps_c and a test passed as in skip() with e + 2h in place of e:
// W >= sqrt(F) (R + e + 2h), so Z >= sqrt(F) (R + e + 2h) - 2h >= sqrt(F) (R + e) (F >= 1),
// which is what skip()'s derivation draws from q; the rest follows as there (the rounding of
// the right-hand side is covered by F's slack as there, and its (1 + g_m) is spare here).
// eps_max >= eps_i + h for every i (a constant instead of a read per row), eps_c_h = eps_c + h.
[[gnu::always_inline]] inline bool coarse_skip(float q8, float mi, float eps_max, float eps_c_h,
                                               float factor, float abs_slack, float abs_q) {
  return skip(q8, mi, eps_max, eps_c_h, factor, abs_slack, abs_q);
}

// Counts of one pass: rows whose full features were read, rows whose float32 projection was
// read, rows whose int8 copy was read.
struct ReadCount {
  std::int64_t full = 0, projected = 0, coarse = 0;
};

// Rows [begin, end): add centre c to min_d through the bound (full row read only where it
// cannot exclude an update), return the arg-max of min_d there (lowest index on ties).
kcenter_ops::ArgMax projected_rows(const float* x, std::int64_t d, const ProjectionBound& pb,
                                   std::int64_t begin, std::int64_t end, std::int64_t c,
                                   float* min_d, ReadCount& count);

}  // namespace dalcore::cpu::projection
