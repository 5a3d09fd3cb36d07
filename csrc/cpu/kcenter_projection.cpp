// Projection lower bound of greedy k-center: the error radii of the m-dimensional copy and the
// row loop that reads it (see dalcore/detail/kcenter_projection.h for the bound's derivation).
#include "dalcore/detail/kcenter_projection.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "dalcore/detail/multiversion.h"
#include "dalcore/detail/omp_guard.h"
#include "dalcore/status.h"
#include "kcenter_row_lists.h"

namespace dalcore::cpu::projection {
namespace {

typedef float v16f __attribute__((vector_size(64)));
typedef std::int32_t v16i __attribute__((vector_size(64)));
constexpr int kBlock = 16;  // rows per block of projected_rows
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
// pt = P^T, d x m), c2[i] = fl(sum_k c_k^2) (in 16 lane sums: the error radii hold for any
// order); row i of z starts at z + i * stride (the padding beyond m is left as it is: zeros).
// M > 0: m known at compile time (vectorised over the m accumulators); M = 0: any m. `buf`
// holds 4 * d floats.
template <int M>
[[gnu::always_inline]] inline void project_rows_t(const float* x, std::int64_t d, std::int64_t m,
                                                  std::int64_t stride, const float* pt,
                                                  const float* mu, std::int64_t begin,
                                                  std::int64_t end, float* z, float* c2,
                                                  float* buf) {
  constexpr int P = 4;
  const std::int64_t mm = M > 0 ? M : m;
  for (std::int64_t i0 = begin; i0 < end; i0 += P) {
    const std::int64_t np = std::min<std::int64_t>(P, end - i0);
    for (std::int64_t p = 0; p < P; ++p) {
      const float* xi = x + (i0 + std::min(p, np - 1)) * d;
      float* c = buf + p * d;
      for (std::int64_t k = 0; k < d; ++k) c[k] = xi[k] - mu[k];
      // |c|^2 in 16 lanes (one chain of d dependent adds was most of this function's time);
      // the error radii hold for any summation order
      if (p < np) c2[i0 + p] = kcenter_ops::sq_norm(c, d);
    }
    for (std::int64_t p = 0; p < np; ++p) {
      float* zi = z + (i0 + p) * stride;
      for (std::int64_t j = 0; j < mm; ++j) zi[j] = 0.0f;
    }
    float acc[P][M > 0 ? M : 1];
    if constexpr (M > 0 && M % 16 == 0) {
      // explicit vectors of 16 (the loop form below got shuffled across k by GCC 12): the
      // same operations per element, in the same order
      constexpr int V = M / 16;
      v16f av[P][V];
      for (int p = 0; p < P; ++p)
        for (int v = 0; v < V; ++v) av[p][v] = v16f{};
      for (std::int64_t k = 0; k < d; ++k) {
        v16f row[V];
        std::memcpy(row, pt + k * M, sizeof(row));
        for (int p = 0; p < P; ++p) {
          const float a = buf[p * d + k];
          for (int v = 0; v < V; ++v) av[p][v] += a * row[v];
        }
      }
      for (std::int64_t p = 0; p < np; ++p)
        std::memcpy(z + (i0 + p) * stride, av[p], sizeof(av[p]));
    } else if constexpr (M > 0) {
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
        for (int j = 0; j < M; ++j) z[(i0 + p) * stride + j] = acc[p][j];
    } else {
      for (std::int64_t p = 0; p < np; ++p)
        for (std::int64_t k = 0; k < d; ++k) {
          const float a = buf[p * d + k];
          float* zi = z + (i0 + p) * stride;
          for (std::int64_t j = 0; j < m; ++j) zi[j] += a * pt[k * m + j];
        }
    }
  }
}

DALCORE_MULTIVERSION
void project_rows(const float* x, std::int64_t d, std::int64_t m, std::int64_t stride,
                  const float* pt, const float* mu, std::int64_t begin, std::int64_t end,
                  float* z, float* c2, float* buf) {
  switch (m) {
    case 8: return project_rows_t<8>(x, d, m, stride, pt, mu, begin, end, z, c2, buf);
    case 16: return project_rows_t<16>(x, d, m, stride, pt, mu, begin, end, z, c2, buf);
    case 24: return project_rows_t<24>(x, d, m, stride, pt, mu, begin, end, z, c2, buf);
    case 32: return project_rows_t<32>(x, d, m, stride, pt, mu, begin, end, z, c2, buf);
    default: return project_rows_t<0>(x, d, m, stride, pt, mu, begin, end, z, c2, buf);
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

// Components in the int8 copy: the first 16 (the largest variances). The full passes test every
// row on them (16 bytes), the float32 test then reads all m (up to 32) of the few rows they
// cannot clear: on 60,000-row pools, m = 32 with 16 in the copy took 0.115 s for 1000 picks of
// Fashion-MNIST PCA-128 and 0.556 s on its pixels, against 0.114 s and 0.566 s with all 32 in
// the copy and 0.135 s and 0.870 s with m = 16.
constexpr std::int64_t kCoarseWidth = 16;

// The int8 copy of the first cstride components of z ("The coarse test" in
// kcenter_projection.h): s = 2^e, the smallest power of two with 127 s >= max |z| over them
// (so |z / s| <= 127 and k fits), k = nearbyint(z / s), stored biased as k + 128 (1 .. 255, the
// unsigned operand of the coarse passes' byte dot products). Not made (kb empty) where s^2 would
// not be a normal float (|z| beyond 2^60 or below 2^-55).
void make_coarse(ProjectionBound& pb, std::int64_t n) {
  const std::int64_t cs = std::min<std::int64_t>(pb.stride, kCoarseWidth);
  float zmax = 0.0f, emax = 0.0f;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < cs; ++j)
      zmax = std::max(zmax, std::fabs(pb.z[static_cast<std::size_t>(i * pb.stride + j)]));
  for (std::int64_t i = 0; i < n; ++i) emax = std::max(emax, pb.eps[i]);
  int e = 0;
  if (zmax > 0.0f) {
    std::frexp(static_cast<double>(zmax) / 127.0, &e);  // 2^(e-1) <= zmax / 127 < 2^e
    if (std::ldexp(1.0, e - 1) * 127.0 >= zmax) --e;
  }
  if (e < -55 || e > 60) return;
  const double h = 0.5 * std::ldexp(1.0, e) * std::sqrt(static_cast<double>(cs)) *
                   (1.0 + std::ldexp(1.0, -20));
  pb.cstride = cs;
  // Blocked by 16 rows (coarse_at; the last block padded with zeros).
  const std::int64_t nb = (n + kBlock - 1) / kBlock;
  pb.kb.assign(static_cast<std::size_t>(nb * kBlock * cs), 128);  // padding rows: k = 0
  const float inv = static_cast<float>(std::ldexp(1.0, -e));  // 2^-e, a normal float here
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < cs; ++j) {
      // the quotient is exact (a power of two; a subnormal one within 2^-149); |v| <= 127, so
      // adding and subtracting 1.5 * 2^23 rounds it to the nearest integer, ties to even, as
      // nearbyint does (without its library call per value)
      const float v = pb.z[static_cast<std::size_t>(i * pb.stride + j)] * inv;
      const float k = (v + 12582912.0f) - 12582912.0f;
      pb.kb[coarse_at(cs, i, j)] = static_cast<std::uint8_t>(static_cast<int>(k) + 128);
    }
  pb.s2 = static_cast<float>(std::ldexp(1.0, 2 * e));
  pb.eps_max = round_up(static_cast<double>(emax) + h);
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
  pb.stride = (m + 15) / 16 * 16;
  pb.z.assign(static_cast<std::size_t>(n * pb.stride), 0.0f);
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
        project_rows(x, d, m, pb.stride, pt.data(), mu.data(), i0, i1, pb.z.data(),
                     c2.data() - i0, buf.data());
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
  const double gm = static_cast<double>(pb.stride + 8) * 2.0 * kU;
  const double gfull = static_cast<double>(d + 8) * 2.0 * kU;
  const double f = (1.0 + gm) * (1.0 + delta) / (1.0 - gfull) * (1.0 + 64.0 * kU);
  pb.factor = round_up(f);
  pb.abs_slack = round_up(static_cast<double>(d + 8) * kTiny);
  pb.abs_q = round_up(static_cast<double>(pb.stride + 8) * kTiny);
  make_coarse(pb, n);
  return pb;
}

namespace {


// The 16 lane sums of acc[0..16), lane p of the result = the sum of acc[p]'s lanes: a transposed
// pairwise tree (each step folds every vector in half and packs two vectors into one), 15 adds
// and 30 shuffles for 16 rows instead of 16 horizontal folds.
template <class V>
[[gnu::always_inline]] inline V lane_sums(const V* acc) {
  V t[8], u[4], w[2];
  for (int i = 0; i < 8; ++i) {
    const V a = acc[2 * i], b = acc[2 * i + 1];
    t[i] = __builtin_shuffle(a, b, v16i{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}) +
           __builtin_shuffle(a, b, v16i{8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30,
                                        31});
  }
  for (int i = 0; i < 4; ++i) {  // t: lanes 0-7 row 2i, 8-15 row 2i + 1
    const V a = t[2 * i], b = t[2 * i + 1];
    u[i] = __builtin_shuffle(a, b, v16i{0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26,
                                        27}) +
           __builtin_shuffle(a, b, v16i{4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30,
                                        31});
  }
  for (int i = 0; i < 2; ++i) {  // u: lanes 4k..4k+3 row 4i + k
    const V a = u[2 * i], b = u[2 * i + 1];
    w[i] = __builtin_shuffle(a, b, v16i{0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28,
                                        29}) +
           __builtin_shuffle(a, b, v16i{2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30,
                                        31});
  }
  // w: lanes 2k, 2k + 1 row 8i + k
  return __builtin_shuffle(w[0], w[1], v16i{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                            28, 30}) +
         __builtin_shuffle(w[0], w[1], v16i{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27,
                                            29, 31});
}

[[gnu::always_inline]] inline v16f load16(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}


// The skip test of 16 rows from their 16 squared distances q (the operations of skip(), as
// loops over 16 lanes the compiler vectorises), eps_i from `eps`. Returns the mask of the rows
// to examine further: not a centre (mi >= 0) and not provably skipped (!(q >= ...), so a NaN is
// examined).
[[gnu::always_inline]] inline std::uint32_t lanes_to_read(const v16f& q, const float* mi,
                                                          const float* eps, float eps_c,
                                                          const ProjectionBound& pb) {
  float qa[kBlock], r[kBlock];
  std::int32_t rd[kBlock];
  std::memcpy(qa, &q, sizeof(qa));
  for (int l = 0; l < kBlock; ++l)
    r[l] = __builtin_sqrtf(mi[l] + pb.abs_slack) + (eps[l] + eps_c);
  for (int l = 0; l < kBlock; ++l)
    rd[l] = (mi[l] >= 0.0f) & !(qa[l] >= pb.factor * (r[l] * r[l]) + pb.abs_q);
  std::uint32_t bits = 0;
  for (int l = 0; l < kBlock; ++l) bits |= static_cast<std::uint32_t>(rd[l]) << l;
  return bits;
}

}  // namespace

// Rows [i0, i0 + 16): the projected squared distances of all 16 at once (lane_sums), then the
// skip test of each (the same operations as skip(), as loops over 16 lanes the compiler
// vectorises). Returns the mask of the rows whose full features must be read: not a centre
// (mi >= 0) and not provably skipped (!(q >= ...), so a NaN is read).
[[gnu::always_inline]] inline std::uint32_t block_reads(const ProjectionBound& pb,
                                                        std::int64_t i0, const float* zc,
                                                        float ec, const float* min_d) {
  const std::int64_t stride = pb.stride;
  v16f acc[kBlock];
  for (int p = 0; p < kBlock; ++p) {
    const float* zi = pb.z.data() + (i0 + p) * stride;
    v16f a = load16(zi) - load16(zc);
    a = a * a;
    for (std::int64_t k = kBlock; k < stride; k += kBlock) {
      const v16f t = load16(zi + k) - load16(zc + k);
      a += t * t;
    }
    acc[p] = a;
  }
  return lanes_to_read(lane_sums(acc), min_d + i0, pb.eps.data() + i0, ec, pb);
}

// Rows [begin, end): the arg-max of min_d (centres excluded; lowest index on ties), 16 lanes
// at a time (a lane keeps its earlier row on ties, the lanes are combined with beats()).
[[gnu::always_inline]] inline kcenter_ops::ArgMax range_argmax(const float* min_d,
                                                               std::int64_t begin,
                                                               std::int64_t end) {
  kcenter_ops::ArgMax best = kcenter_ops::argmax_none();
  std::int64_t i0 = begin;
  if (end - begin >= kBlock) {
    float bv[kBlock];
    std::int32_t bi[kBlock];
    for (int l = 0; l < kBlock; ++l) {
      bv[l] = -2.0f;
      bi[l] = -1;
    }
    for (; i0 + kBlock <= end; i0 += kBlock) {
      const float* m = min_d + i0;
      const auto off = static_cast<std::int32_t>(i0 - begin);
      for (int l = 0; l < kBlock; ++l) {
        const bool b = m[l] > bv[l];  // centres (-1) never beat a candidate (>= 0)
        bv[l] = b ? m[l] : bv[l];
        bi[l] = b ? off + l : bi[l];
      }
    }
    for (int l = 0; l < kBlock; ++l)
      if (bi[l] >= 0 && bv[l] >= 0.0f) {
        const kcenter_ops::ArgMax a{bv[l], begin + bi[l]};
        if (kcenter_ops::beats(a, best)) best = a;
      }
  }
  for (std::int64_t i = i0; i < end; ++i)
    if (min_d[i] >= 0.0f && kcenter_ops::beats(kcenter_ops::ArgMax{min_d[i], i}, best))
      best = kcenter_ops::ArgMax{min_d[i], i};
  return best;
}

// Rows [begin, end) (below 2^31 of them), in blocks of 16 rows tested at once by their float32
// projections (block_reads); the rows it cannot clear are read in full (RowLists: listed and
// prefetched); then the arg-max of the updated min-distances over the range. (Where there is an
// int8 copy, the full passes take kcenter_coarse.cpp instead.)
[[gnu::always_inline]] inline kcenter_ops::ArgMax projected_range(
    const float* x, std::int64_t d, const ProjectionBound& pb, std::int64_t begin,
    std::int64_t end, std::int64_t c, float* min_d, ReadCount& count) {
  const float* zc = pb.z.data() + c * pb.stride;
  const float ec = pb.eps[static_cast<std::size_t>(c)];
  RowLists lists(x, d, pb, c, min_d, [](std::int64_t) {});
  std::int64_t i0 = begin;
  for (; i0 < end && i0 % kBlock != 0; ++i0)  // the rows before the first block boundary
    if (min_d[i0] >= 0.0f) lists.add_fine(i0);
  const std::int64_t first = i0;
  for (; i0 + kBlock <= end; i0 += kBlock)
    for (std::uint32_t bits = block_reads(pb, i0, zc, ec, min_d); bits; bits &= bits - 1)
      lists.add_row(i0 + __builtin_ctz(bits));
  for (std::int64_t i = i0; i < end; ++i)  // the rows after the last block, one by one
    if (min_d[i] >= 0.0f) lists.add_fine(i);
  lists.finish();
  count.full += lists.full();
  count.projected += lists.fine() + (i0 - first);
  return range_argmax(min_d, begin, end);
}

DALCORE_MULTIVERSION
kcenter_ops::ArgMax projected_rows(const float* x, std::int64_t d, const ProjectionBound& pb,
                                   std::int64_t begin, std::int64_t end, std::int64_t c,
                                   float* min_d, ReadCount& count) {
  constexpr std::int64_t kSpan = std::int64_t{1} << 30;
  kcenter_ops::ArgMax best = kcenter_ops::argmax_none();
  for (std::int64_t b = begin; b < end; b += kSpan) {  // in order: ties keep the lowest index
    const kcenter_ops::ArgMax a =
        projected_range(x, d, pb, b, std::min(end, b + kSpan), c, min_d, count);
    if (kcenter_ops::beats(a, best)) best = a;
  }
  return best;
}

}  // namespace dalcore::cpu::projection
