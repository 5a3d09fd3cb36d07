// The projection lower bound of greedy k-center on the GPU path (csrc/cuda/kcenter.cu): the
// host-side preparation (basis rounded to float32 and validated, the error constants) and the
// per-point test, host+device. The bound and its derivation are the CPU path's
// (dalcore/detail/kcenter_projection.h, csrc/cpu/kcenter_projection.cpp), with the same
// constants: they hold for any summation order whose depth is at most n + 8 for n terms, which
// covers the tile order of dalcore/detail/tile.h (ceil(n / 32) sequential additions per lane,
// then 5 butterfly levels), the order of the GPU path's distances.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "dalcore/detail/hd.h"
#include "dalcore/detail/tile.h"
#include "dalcore/status.h"

namespace dalcore::kcenter_bound {

inline constexpr double kU = 5.9604644775390625e-08;     // 2^-24, float32 unit roundoff
inline constexpr double kU64 = 1.1102230246251565e-16;   // 2^-53
inline constexpr double kTiny = 2.350988701644575e-38;   // 2^-125 (any flushed subnormal term)

// What the kernels need besides the float32 basis and mean.
struct Scalars {
  double rel = 0.0, under = 0.0, gd = 0.0;  // eps_i = up((rel sqrt(c2_i (1 + 2 gd)) + under) 1.01)
  float factor = 0.0f, abs_slack = 0.0f, abs_q = 0.0f;  // see skip()
};

struct HostBasis {
  std::vector<float> p;   // m x d, row-major (row j: direction j), float32
  std::vector<float> mu;  // d
  Scalars sc;
};

inline float round_up_host(double v) {
  float f = static_cast<float>(v);
  if (static_cast<double>(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

// ||P P^T - I||_F of the float32 basis (held exactly in p64), plus its own rounding.
inline double orthonormality_defect(const std::vector<double>& p64, std::int64_t m,
                                    std::int64_t d) {
  double f2 = 0.0;
  for (std::int64_t a = 0; a < m; ++a)
    for (std::int64_t b = 0; b <= a; ++b) {
      double s = 0.0;
      for (std::int64_t k = 0; k < d; ++k)
        s += p64[static_cast<std::size_t>(a * d + k)] * p64[static_cast<std::size_t>(b * d + k)];
      const double e = s - (a == b ? 1.0 : 0.0);
      f2 += (a == b ? 1.0 : 2.0) * e * e;
    }
  return std::sqrt(f2) + 4.0 * static_cast<double>(d + 2) * kU64;
}

// Validates basis (m x d float64, rows nearly orthonormal once rounded to float32) and mean (d
// float64), rounds them and computes the constants. InvalidArgument naming `projection`.
inline HostBasis prepare(const double* basis, const double* mean, std::int64_t m,
                         std::int64_t d) {
  require(m >= 1 && m <= d, "projection: expected 1 <= m <= d (", d, "), got ", m);
  require(static_cast<double>(d + 8) * 2.0 * kU < 1e-3, "projection: d = ", d, " is too large");
  HostBasis hb;
  hb.p.resize(static_cast<std::size_t>(m * d));
  hb.mu.resize(static_cast<std::size_t>(d));
  std::vector<double> p64(hb.p.size());
  for (std::size_t k = 0; k < hb.p.size(); ++k) {
    require(std::isfinite(basis[k]) && std::fabs(basis[k]) <= 2.0,
            "projection: the basis has an entry that is not finite or above 2");
    hb.p[k] = static_cast<float>(basis[k]);
    p64[k] = hb.p[k];
  }
  for (std::int64_t k = 0; k < d; ++k) {
    require(std::isfinite(mean[k]) && std::fabs(mean[k]) < 1e30,
            "projection: the mean has an entry that is not finite or beyond 1e30");
    hb.mu[static_cast<std::size_t>(k)] = static_cast<float>(mean[k]);
  }
  const double delta = orthonormality_defect(p64, m, d);
  require(delta < 0.25, "projection: the basis rows are not orthonormal (||P P^T - I|| = ",
          delta, ")");
  // As make_bound (csrc/cpu/kcenter_projection.cpp): |z_i - P (x_i - mu)| <= eps_i.
  const double gd = 1.01 * static_cast<double>(d) * kU / (1.0 - static_cast<double>(d) * kU);
  hb.sc.gd = gd;
  hb.sc.rel = gd * std::sqrt(static_cast<double>(m) * (1.0 + delta)) +
              2.0 * kU * std::sqrt(1.0 + delta);
  hb.sc.under = std::sqrt(static_cast<double>(m)) * static_cast<double>(d + 2) * kTiny;
  const double gm = static_cast<double>(m + 8) * 2.0 * kU;
  const double gfull = static_cast<double>(d + 8) * 2.0 * kU;
  hb.sc.factor = round_up_host((1.0 + gm) * (1.0 + delta) / (1.0 - gfull) * (1.0 + 64.0 * kU));
  hb.sc.abs_slack = round_up_host(static_cast<double>(d + 8) * kTiny);
  hb.sc.abs_q = round_up_host(static_cast<double>(m + 8) * kTiny);
  return hb;
}

// eps_i from c2 = fl(|fl(x_i - mu)|^2), rounded up to float (the same bits on both backends).
DALCORE_HD float eps_of(float c2, const Scalars& sc) {
  const double c = ::sqrt(static_cast<double>(c2) * (1.0 + 2.0 * sc.gd));
  const double v = (sc.rel * c + sc.under) * 1.01;
#if defined(__CUDA_ARCH__)
  return __double2float_ru(v);
#else
  return round_up_host(v);
#endif
}

// True when the projected squared distance q proves that the centre cannot lower the point's
// min-distance mi (see skip() in dalcore/detail/kcenter_projection.h for the derivation).
DALCORE_HD bool skip(float q, float mi, float eps_i, float eps_c, const Scalars& sc) {
  using tile::add_rn;
  using tile::mul_rn;  // no FMA contraction: the same decision on both backends
  const float r = add_rn(::sqrtf(add_rn(mi, sc.abs_slack)), add_rn(eps_i, eps_c));
  return q >= add_rn(mul_rn(sc.factor, mul_rn(r, r)), sc.abs_q);
}

}  // namespace dalcore::kcenter_bound
