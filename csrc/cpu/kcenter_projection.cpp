// Projection lower bound of greedy k-center: the error radii of the m-dimensional copy and the
// row loop that reads it (see dalcore/detail/kcenter_projection.h for the bound's derivation).
#include "dalcore/detail/kcenter_projection.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "dalcore/detail/multiversion.h"
#include "dalcore/detail/omp_guard.h"
#include "dalcore/status.h"

namespace dalcore::cpu::projection {
namespace {

constexpr double kU = 5.9604644775390625e-08;  // 2^-24, float32 unit roundoff
constexpr double kU64 = 1.1102230246251565e-16;  // 2^-53
constexpr double kTiny = 2.350988701644575e-38;  // 2^-125: beyond any flush or rounding of a
                                                  // subnormal term (2^-126 at most)

// A float >= v (v finite, >= 0).
float round_up(double v) {
  float f = static_cast<float>(v);
  if (static_cast<double>(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

// ||P P^T - I||_F (>= the spectral norm of P P^T - I), plus the rounding of its computation.
double orthonormality_defect(const double* basis, std::int64_t m, std::int64_t d) {
  double f2 = 0.0;
  for (std::int64_t a = 0; a < m; ++a)
    for (std::int64_t b = 0; b <= a; ++b) {
      double s = 0.0;
      for (std::int64_t k = 0; k < d; ++k) s += basis[a * d + k] * basis[b * d + k];
      const double e = s - (a == b ? 1.0 : 0.0);
      f2 += (a == b ? 1.0 : 2.0) * e * e;
    }
  return std::sqrt(f2) + 4.0 * static_cast<double>(d + 2) * kU64;
}


// Rows of 4 at a time: c = fl(x_i - mu) (float32), z_i = sum_k c_k pt[k] (float32, k in order;
// pt = P^T, d x m), c2[i] = fl(sum_k c_k^2). M > 0: m known at compile time (vectorised over
// the m accumulators); M = 0: any m. `buf` holds 4 * d floats.
template <int M>
[[gnu::always_inline]] inline void project_rows_t(const float* x, std::int64_t d, std::int64_t m,
                                                  const float* pt, const float* mu,
                                                  std::int64_t begin, std::int64_t end,
                                                  float* z, float* c2, float* buf) {
  constexpr int P = 4;
  const std::int64_t mm = M > 0 ? M : m;
  for (std::int64_t i0 = begin; i0 < end; i0 += P) {
    const std::int64_t np = std::min<std::int64_t>(P, end - i0);
    for (std::int64_t p = 0; p < P; ++p) {
      const float* xi = x + (i0 + std::min(p, np - 1)) * d;
      float* c = buf + p * d;
      float q = 0.0f;
      for (std::int64_t k = 0; k < d; ++k) {
        c[k] = xi[k] - mu[k];
        q += c[k] * c[k];
      }
      if (p < np) c2[i0 + p] = q;
    }
    for (std::int64_t p = 0; p < np; ++p) {
      float* zi = z + (i0 + p) * mm;
      for (std::int64_t j = 0; j < mm; ++j) zi[j] = 0.0f;
    }
    float acc[P][M > 0 ? M : 1];
    if constexpr (M > 0) {
      for (int p = 0; p < P; ++p)
        for (int j = 0; j < M; ++j) acc[p][j] = 0.0f;
      for (std::int64_t k = 0; k < d; ++k) {
        const float* row = pt + k * M;
        for (int p = 0; p < P; ++p) {
          const float a = buf[p * d + k];
          for (int j = 0; j < M; ++j) acc[p][j] += a * row[j];
        }
      }
      for (std::int64_t p = 0; p < np; ++p)
        for (int j = 0; j < M; ++j) z[(i0 + p) * M + j] = acc[p][j];
    } else {
      for (std::int64_t p = 0; p < np; ++p)
        for (std::int64_t k = 0; k < d; ++k) {
          const float a = buf[p * d + k];
          float* zi = z + (i0 + p) * m;
          for (std::int64_t j = 0; j < m; ++j) zi[j] += a * pt[k * m + j];
        }
    }
  }
}

DALCORE_MULTIVERSION
void project_rows(const float* x, std::int64_t d, std::int64_t m, const float* pt,
                  const float* mu, std::int64_t begin, std::int64_t end, float* z, float* c2,
                  float* buf) {
  switch (m) {
    case 8: return project_rows_t<8>(x, d, m, pt, mu, begin, end, z, c2, buf);
    case 16: return project_rows_t<16>(x, d, m, pt, mu, begin, end, z, c2, buf);
    case 32: return project_rows_t<32>(x, d, m, pt, mu, begin, end, z, c2, buf);
    default: return project_rows_t<0>(x, d, m, pt, mu, begin, end, z, c2, buf);
  }
}

// P and mu rounded to float32 (P transposed, d x m), after validation.
void rounded_basis(const double* basis, const double* mean, std::int64_t m, std::int64_t d,
                   std::vector<float>& pt, std::vector<float>& mu,
                   std::vector<double>& p64) {
  pt.resize(static_cast<std::size_t>(m * d));
  p64.resize(static_cast<std::size_t>(m * d));
  mu.resize(static_cast<std::size_t>(d));
  for (std::int64_t a = 0; a < m; ++a)
    for (std::int64_t k = 0; k < d; ++k) {
      const double v = basis[a * d + k];
      require(std::isfinite(v) && std::fabs(v) <= 2.0,
              "projection: the basis has an entry that is not finite or above 2");
      pt[static_cast<std::size_t>(k * m + a)] = static_cast<float>(v);
      p64[static_cast<std::size_t>(a * d + k)] = static_cast<float>(v);
    }
  for (std::int64_t k = 0; k < d; ++k) {
    require(std::isfinite(mean[k]) && std::fabs(mean[k]) < 1e30,
            "projection: the mean has an entry that is not finite or beyond 1e30");
    mu[static_cast<std::size_t>(k)] = static_cast<float>(mean[k]);
  }
}

}  // namespace

ProjectionBound make_bound(const float* x, std::int64_t n, std::int64_t d, const double* basis,
                           const double* mean, std::int64_t m) {
  require(m >= 1 && m <= d, "projection: expected 1 <= m <= d (", d, "), got ", m);
  require(static_cast<double>(d + 2) * kU < 1e-3, "projection: d = ", d, " is too large");
  std::vector<float> pt, mu;
  std::vector<double> p64;  // the float32 basis, exactly, in double
  rounded_basis(basis, mean, m, d, pt, mu, p64);
  const double delta = orthonormality_defect(p64.data(), m, d);
  require(delta < 0.25, "projection: the basis rows are not orthonormal (||P P^T - I|| = ",
          delta, ")");
  ProjectionBound pb;
  pb.m = m;
  pb.z.resize(static_cast<std::size_t>(n * m));
  pb.eps.resize(static_cast<std::size_t>(n));
  // c = fl(x - mu) = (x - mu)(1 + t), |t| <= u per entry, so |c - (x - mu)| <= u |c| / (1 - u);
  // each z_k = fl(P_k . c) is within g_d |P_k| |c| of P_k . c (g_n = n u / (1 - n u), any
  // order, FMA or not), and sum_k |P_k|^2 = trace(P P^T) <= m (1 + delta). Hence
  // |z - P (x - mu)| <= (g_d sqrt(m (1 + delta)) + 2 u sqrt(1 + delta)) |c| + underflow, with
  // |c| <= sqrt(fl(|c|^2) (1 + g_d)). Generous constants: the bound has to hold, not be sharp.
  const double gd = 1.01 * static_cast<double>(d) * kU / (1.0 - static_cast<double>(d) * kU);
  const double rel = gd * std::sqrt(static_cast<double>(m) * (1.0 + delta)) +
                     2.0 * kU * std::sqrt(1.0 + delta);
  const double under = std::sqrt(static_cast<double>(m)) * static_cast<double>(d + 2) * kTiny;
  constexpr std::int64_t kRows = 256;
  const std::int64_t nb = (n + kRows - 1) / kRows;
  detail::OmpGuard guard;
#pragma omp parallel
  {
    std::vector<float> buf, c2;
    guard.run([&] {
      buf.resize(static_cast<std::size_t>(4 * d));
      c2.resize(static_cast<std::size_t>(kRows));
    });
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < nb; ++b)
      guard.run([&] {
        const std::int64_t i0 = b * kRows, i1 = std::min(n, i0 + kRows);
        project_rows(x, d, m, pt.data(), mu.data(), i0, i1, pb.z.data(), c2.data() - i0,
                     buf.data());
        for (std::int64_t i = i0; i < i1; ++i) {
          const double c = std::sqrt(static_cast<double>(c2[static_cast<std::size_t>(i - i0)]) *
                                     (1.0 + 2.0 * gd));
          pb.eps[static_cast<std::size_t>(i)] = round_up((rel * c + under) * 1.01);
        }
      });
  }
  guard.rethrow();
  // sq_dist of n terms: 3 roundings per term, ceil(n / 16) lane additions, 4 folds; counted as
  // (n + 8) * 2u. abs_slack, abs_q: flushed or rounded subnormal terms.
  const double gm = static_cast<double>(m + 8) * 2.0 * kU;
  const double gfull = static_cast<double>(d + 8) * 2.0 * kU;
  const double f = (1.0 + gm) * (1.0 + delta) / (1.0 - gfull) * (1.0 + 64.0 * kU);
  pb.factor = round_up(f);
  pb.abs_slack = round_up(static_cast<double>(d + 8) * kTiny);
  pb.abs_q = round_up(static_cast<double>(m + 8) * kTiny);
  return pb;
}

DALCORE_MULTIVERSION
kcenter_ops::ArgMax projected_rows(const float* x, std::int64_t d, const ProjectionBound& pb,
                                   std::int64_t begin, std::int64_t end, std::int64_t c,
                                   float* min_d, ReadCount& count) {
  kcenter_ops::ArgMax best = kcenter_ops::argmax_none();
  const std::int64_t m = pb.m;
  const float* zc = pb.z.data() + c * m;
  const float* xc = x + c * d;
  const float ec = pb.eps[static_cast<std::size_t>(c)];
  const float* eps = pb.eps.data();
  std::int64_t full = 0;
  for (std::int64_t i = begin; i < end; ++i) {
    float mi = min_d[i];
    if (mi < 0.0f) continue;  // a centre
    const float q = kcenter_ops::sq_dist(pb.z.data() + i * m, zc, m);
    if (!skip(q, mi, eps[i], ec, pb.factor, pb.abs_slack, pb.abs_q)) {
      ++full;
      const float s = kcenter_ops::sq_dist(x + i * d, xc, d);
      if (s < mi) {
        mi = s;
        min_d[i] = s;
      }
    }
    if (best.index < 0 || mi > best.value) best = kcenter_ops::ArgMax{mi, i};
  }
  count.full += full;
  count.projected += end - begin;
  return best;
}

}  // namespace dalcore::cpu::projection
