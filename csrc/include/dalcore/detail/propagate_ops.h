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

}  // namespace dalcore::detail::prop
