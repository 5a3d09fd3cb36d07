// Arithmetic of propagate shared by the CPU kernel and the GPU path (CUDA and its OpenMP twin):
// the per-column conjugate-gradient scalar updates and the element-wise vector updates.
//
// Per column c, one iteration is (x, r, p, q = A p with A = I - alpha S):
//   pq_c   = p_c . q_c                         (fused with the SpMM)
//   step_c = rho_c / pq_c                      cg_step
//   r_c   -= step_c q_c ;  rr_c = r_c . r_c    (one fused pass)
//   beta_c = rr_c / rho_c ; rho_c = rr_c       cg_direction
//   x_c   += step_c p_c ;  p_c = r_c + beta_c p_c   (one fused pass: x is updated late)
// A converged (or broken-down) column gets step 0, beta 1, gamma 0, so every vector update
// leaves it exactly as it is: the same branch-free passes serve active and frozen columns.
#pragma once

#include <cmath>
#include <cstdint>

#include "dalcore/detail/hd.h"

namespace dalcore::detail::prop {

enum ColumnState : std::uint8_t { kConverged = 0, kActive = 1, kBreakdown = 2 };

// Right-hand side entry Y[i, c] = 1 / |L_c| for a labeled row of class c, else 0.
DALCORE_HD double rhs(std::int64_t label, std::int64_t c, std::int64_t class_count) {
  return label == c ? 1.0 / static_cast<double>(class_count) : 0.0;
}

// ||b_c||^2 = |L_c| * (1 / |L_c|)^2.
DALCORE_HD double rhs_norm2(std::int64_t class_count) {
  return 1.0 / static_cast<double>(class_count);
}

DALCORE_HD double relative_residual(double rr, double bb) {
  return rr > 0.0 ? std::sqrt(rr / bb) : 0.0;
}

// Before the first iteration, with rr0 = ||r0||^2: the column is active unless x0 already solves it.
DALCORE_HD std::uint8_t cg_start(double rr0, double bb, double tol, double* rho, double* relres) {
  *rho = rr0;
  *relres = relative_residual(rr0, bb);
  return *relres > tol ? kActive : kConverged;
}

// After pq = p.Ap: the step length, 0 for a frozen column. A non-positive (or NaN) p.Ap means
// A is not positive definite: the column stops with kBreakdown.
DALCORE_HD double cg_step(std::uint8_t* state, double rho, double pq) {
  if (*state != kActive) return 0.0;
  if (!(pq > 0.0)) {
    *state = kBreakdown;
    return 0.0;
  }
  return rho / pq;
}

// After rr = r.r (r already updated with `step`): convergence test and the direction update
// p = gamma r + beta p. A column that was not updated this iteration (step == 0) keeps p.
DALCORE_HD void cg_direction(std::uint8_t* state, double step, double rr, double bb, double tol,
                             double* rho, double* relres, std::int64_t* iterations, double* beta,
                             double* gamma) {
  if (step > 0.0) {
    *iterations += 1;
    *relres = relative_residual(rr, bb);
    if (*relres <= tol) {
      *state = kConverged;
      *beta = 1.0;
      *gamma = 0.0;
    } else {
      *beta = rr / *rho;
      *gamma = 1.0;
    }
    *rho = rr;
  } else {
    *beta = 1.0;
    *gamma = 0.0;
  }
}

// q = p_i - alpha * (S p)_i for one entry, given the row's accumulated (S p)_i.
template <class V>
DALCORE_HD V apply_a(V p_i, V sp_i, V alpha) {
  return p_i - alpha * sp_i;
}

// r -= step q.
template <class V>
DALCORE_HD V residual_update(V r, V q, V step) {
  return r - step * q;
}

// x += step p ; p = gamma r + beta p   (x uses the old p).
template <class V>
DALCORE_HD void solution_direction_update(V* x, V* p, V r, V step, V beta, V gamma) {
  const V p_old = *p;
  *x += step * p_old;
  *p = gamma * r + beta * p_old;
}

// ---- the symmetry test, one definition for both paths
// CG needs a symmetric S. A randomised test in one pass over the graph, for the fixed
// pseudo-random vectors u_i = hash_unit(i, 0), v_i = hash_unit(i, 1):
//   |u'Sv - v'Su| <= kSymmetryRtol * sum_ij |u_i S_ij v_j|.
// Each path sums the per-row terms of symmetry_row (CPU: an OpenMP reduction; GPU: a Thrust
// reduction) and decides with symmetric_enough; only the order of the additions differs.
inline constexpr double kSymmetryRtol = 1e-4;

// A fixed pseudo-random value in [-1, 1) per (index, stream) (splitmix64).
DALCORE_HD double hash_unit(std::uint64_t i, std::uint64_t stream) {
  std::uint64_t z = i * 2 + stream + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

struct SymmetryTerms {
  double uv = 0.0, vu = 0.0, scale = 0.0;
};

DALCORE_HD SymmetryTerms operator+(const SymmetryTerms& a, const SymmetryTerms& b) {
  SymmetryTerms t;
  t.uv = a.uv + b.uv;
  t.vu = a.vu + b.vu;
  t.scale = a.scale + b.scale;
  return t;
}

// Row i's terms; u(j), v(j) give the test vectors (looked up or hashed: the same values).
template <class U, class V>
DALCORE_HD SymmetryTerms symmetry_row(std::int64_t i, const std::int64_t* indptr,
                                      const std::int32_t* indices, const float* data, const U& u,
                                      const V& v) {
  SymmetryTerms t;
  const double ui = u(i), vi = v(i);
  for (std::int64_t k = indptr[i]; k < indptr[i + 1]; ++k) {
    const std::int64_t j = indices[k];
    const double s = data[k];
    const double a = ui * s * v(j);
    t.uv += a;
    t.vu += vi * s * u(j);
    t.scale += a < 0 ? -a : a;
  }
  return t;
}

struct HashedVector {
  std::uint64_t stream;
  DALCORE_HD double operator()(std::int64_t i) const {
    return hash_unit(static_cast<std::uint64_t>(i), stream);
  }
};

inline bool symmetric_enough(const SymmetryTerms& t, double* diff) {
  *diff = t.uv > t.vu ? t.uv - t.vu : t.vu - t.uv;
  return *diff <= kSymmetryRtol * t.scale;
}

}  // namespace dalcore::detail::prop
