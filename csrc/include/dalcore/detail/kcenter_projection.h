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
  // The coarse copy (the full passes' first test, see "The coarse test" below): the first
  // cstride components of z rounded to integers in units of one power of two s,
  // k_i = nearbyint(z_i / s) in [-127, 127], N x cstride bytes k_i + 128, in blocks of 16 rows
  // (coarse_at below; kcenter_coarse.h) (empty: no coarse copy, every row takes the float32
  // test).
  std::vector<std::uint8_t> kb;
  std::int64_t cstride = 0;  // components in the int8 copy (the first ones; multiple of 16)
  float s2 = 0.0f;       // s^2, exactly
  float eps_max = 0.0f;  // >= max_i eps_i + h, h >= |s k_i - z_i| for every i
};

// Where component j of row i lies in the int8 copy: blocks of 16 rows (block b at
// b * 16 * stride), in a block groups of 4 components (group g at 64 g), in a group the 4 bytes
// of each row side by side (row l at 4 l).
inline std::size_t coarse_at(std::int64_t stride, std::int64_t i, std::int64_t j) {
  return static_cast<std::size_t>((i / 16) * 16 * stride + (j / 4) * 64 + (i % 16) * 4 + j % 4);
}

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

// The coarse test (the int8 copy of the first cstride components; the full passes apply it as
// one integer comparison per row, dalcore/detail/kcenter_coarse.h). k_i = nearbyint(z'_i / s),
// z'_i the first cstride components of z_i, with z'_i / s exact (s a power of two; a subnormal
// quotient is off by at most 2^-149), so w_i = s k_i is within h = 0.5 s sqrt(cstride)
// (1 + 2^-20) of z'_i, and Z = |z_i - z_c| >= |z'_i - z'_c| >= W - 2h, W = |w_i - w_c|.
// K = |k_i - k_c|^2 is an exact integer and W^2 = K s^2. With R = sqrt(mi + abs_slack) and
// e = eps_i + eps_c, a test passed as in skip() by W^2, with e + 2h in place of e
// (W^2 >= F (R + e + 2h)^2 + abs_q, the right-hand side rounded up), gives
// W >= sqrt(F) (R + e + 2h), so Z >= sqrt(F) (R + e + 2h) - 2h >= sqrt(F) (R + e) (F >= 1),
// which is what skip()'s derivation draws from q (its (1 + g_m) is spare here); the rest
// follows as there. eps_max >= eps_i + h for every i bounds e + 2h by 2 eps_max.

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
