// CPU kernel of greedy k-center (OpenMP).
//
// State: min_d[i], the squared distance of point i to its nearest centre (labeled points and
// picks; centres hold the sentinel kCenter). A pick is the arg-max of min_d (lowest index on ties);
// adding centre c updates min_d[i] = min(min_d[i], |x_i - x_c|^2). Memory beyond the features is
// O(N): min_d, and for the pruned path the member lists of the groups.
//
// Unpruned: one fused pass over the rows per pick (distance, min update, arg-max per chunk; the
// chunks' results are combined in chunk order with the lowest-index tie-break, so the pick does not
// depend on the number of threads or the schedule).
//
// Pruned: points are grouped by the centre that gives their min-distance, each group a list of
// its members. When c is added, a group with centre a and largest squared min-distance r2 is
// skipped when d(a, c) >= 2 sqrt(r2) (with a small safety margin, see
// kcenter_ops::group_unaffected): by the triangle inequality none of its points gets closer to c.
// The members of the other groups are visited (groups spread over the threads), the same test
// clears most of them point by point, and only the remaining rows are read (software prefetch:
// the rows lie anywhere); a point that gets closer to c moves to c's group. Each group keeps its
// arg-max (lowest index on ties, whatever the order of its list), so a pick is an arg-max over
// groups. Same min-distances, hence the same picks, as the unpruned pass. The cost per pick is
// O(#centres * d) for the test, the members of the affected groups, and d floats per row read.
// The pruned path screens the distances to the labeled set with dot products (screened_rows:
// bounded approximations, exact sq_dist for the candidates only); the unpruned path computes
// them all, in register blocks (sq_dist_block, summed exactly as sq_dist), as it does the
// distances to the centres.
//
// Projection bound (with a projection, the default for pools of 48+ columns and 2^20+ floats;
// csrc/cpu/kcenter_projection.cpp): the pool is projected on m of its top principal directions
// (z, N x m, beside the features). A point that the group test cannot clear is cleared when
// |z_i - z_c| (every rounding of z and of both squared distances accounted for) proves that
// fl(|x_i - x_c|^2) >= min_d[i]: the plain pass would not update it either, so min-distances and
// picks stay bit-identical. Pixels and their projections (where the triangle inequality fails)
// then read z for every point and the full row for a few percent of them; the full passes
// (csrc/cpu/kcenter_coarse.cpp) test every point with one integer comparison on an int8 copy of
// z's first 16 components (byte dot products, AVX-512 VNNI where the CPU has it; its rounding
// folded into a per-point threshold), read z for the few it cannot clear, the full row for fewer
// still, and keep the arg-max per block of 256 points.
//
// Full passes run on one thread or on all, whichever their measured wall times favour
// (kcenter_pass_threads.h: on a shared machine a fork/join per pick can wait a time slice for a
// descheduled thread); the picks do not depend on it.
//
// Hand-overs: when the pruned sweeps visit over half the candidates for 4 picks in a row (a
// quarter with an int8 copy; or, without a projection, when the first pick would visit 90 % of
// them: then no group is built), the remaining picks are full passes (through the projection
// when there is one; the plain pass once the projection reads over half the rows in full for 4
// passes). Pools below 2^20 floats (in cache) take the plain pass from the start.
//
// The row loops are compiled for AVX-512, AVX2 and baseline x86-64 (GCC function
// multiversioning, chosen at run time) so the binary stays portable.
#include "dalcore/kcenter.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "kcenter_pass_threads.h"
#include "kcenter_screen_dots.h"
#include "dalcore/detail/kcenter_coarse.h"
#include "dalcore/detail/kcenter_ops.h"
#include "dalcore/detail/kcenter_projection.h"
#include "dalcore/detail/omp_guard.h"
#include "dalcore/detail/multiversion.h"
#include "dalcore/status.h"


namespace dalcore::cpu {
namespace {

using kcenter_ops::ArgMax;
using kcenter_ops::ArgMaxOp;
using kcenter_ops::argmax_none;
using kcenter_ops::kCenter;
using kcenter_ops::sq_dist;
using projection::ProjectionBound;

constexpr float kInf = std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------- row loops (multiversioned)

// Rows [begin, end): arg-max of the squared distance to the vector q.
DALCORE_MULTIVERSION
ArgMax farthest_rows(const float* x, std::int64_t d, std::int64_t begin, std::int64_t end,
                     const float* q) {
  ArgMax best = argmax_none();
  for (std::int64_t i = begin; i < end; ++i) {
    const float s = sq_dist(x + i * d, q, d);
    if (best.index < 0 || s > best.value) best = ArgMax{s, i};
  }
  return best;
}

// Squared distances of P rows a[0..P) to L rows b[0..L) (out[p * L + q]), each summed exactly as
// kcenter_ops::sq_dist does (16 lane sums in k order, then the same pairwise fold), so the
// results are bit-identical to P * L calls of sq_dist; the block reuses every loaded chunk P or
// L times and folds the lanes once per pair.
typedef float v16f __attribute__((vector_size(64)));
typedef std::int32_t v16i __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
// Always inlined: called from multiversioned loops, it must be compiled for their ISA.
template <int P, int L>
[[gnu::always_inline]] inline void sq_dist_block(const float* const* a, const float* const* b,
                                                std::int64_t d, float* out) {
  v16f acc[P][L];
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < L; ++q) acc[p][q] = v16f{};
  std::int64_t k = 0;
  for (; k + kcenter_ops::kLanes <= d; k += kcenter_ops::kLanes) {
    v16f va[P], vb[L];
    for (int p = 0; p < P; ++p) std::memcpy(&va[p], a[p] + k, sizeof(v16f));
    for (int q = 0; q < L; ++q) std::memcpy(&vb[q], b[q] + k, sizeof(v16f));
    for (int p = 0; p < P; ++p)
      for (int q = 0; q < L; ++q) {
        const v16f t = va[p] - vb[q];
        acc[p][q] += t * t;
      }
  }
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < L; ++q) {
      if (k < d) {  // d not a multiple of 16: the tail goes to lanes 0, 1, ... as in sq_dist
        float lane[kcenter_ops::kLanes];
        std::memcpy(lane, &acc[p][q], sizeof(lane));
        for (std::int64_t kk = k, l = 0; kk < d; ++kk, ++l) {
          const float t = a[p][kk] - b[q][kk];
          lane[l] += t * t;
        }
        std::memcpy(&acc[p][q], lane, sizeof(lane));
      }
      // sq_dist's fold, on vectors: lanes l and l + 8, then l and l + 4, l and l + 2, 0 and 1
      v8f h8[2];
      std::memcpy(h8, &acc[p][q], sizeof(h8));
      const v8f s8 = h8[0] + h8[1];
      v4f h4[2];
      std::memcpy(h4, &s8, sizeof(h4));
      const v4f s4 = h4[0] + h4[1];
      out[p * L + q] = (s4[0] + s4[2]) + (s4[1] + s4[3]);
    }
}

// Rows [begin, end): add centre c (c < 0: none) to min_d, return the arg-max of min_d there.
// Four rows per step against the centre (sq_dist_block<4, 1>: summed exactly as sq_dist, four
// independent accumulator chains; centre rows are computed and ignored); the arg-max is taken in
// index order, so ties keep the lowest index.
DALCORE_MULTIVERSION
ArgMax scan_rows(const float* x, std::int64_t d, std::int64_t begin, std::int64_t end,
                 std::int64_t c, float* min_d) {
  constexpr int P = 4;
  ArgMax best = argmax_none();
  std::int64_t i = begin;
  if (c >= 0) {
    const float* const xc[1] = {x + c * d};
    for (; i + P <= end; i += P) {
      const float* rows[P];
      for (int p = 0; p < P; ++p) rows[p] = x + (i + p) * d;
      float s[P];
      sq_dist_block<P, 1>(rows, xc, d, s);
      for (int p = 0; p < P; ++p) {
        float m = min_d[i + p];
        if (m < 0.0f) continue;  // a centre
        if (s[p] < m) {
          m = s[p];
          min_d[i + p] = m;
        }
        if (best.index < 0 || m > best.value) best = ArgMax{m, i + p};
      }
    }
  }
  const float* xc = c >= 0 ? x + c * d : nullptr;
  for (; i < end; ++i) {
    float m = min_d[i];
    if (m < 0.0f) continue;  // a centre
    if (xc) {
      const float s = sq_dist(x + i * d, xc, d);
      if (s < m) {
        m = s;
        min_d[i] = s;
      }
    }
    if (best.index < 0 || m > best.value) best = ArgMax{m, i};
  }
  return best;
}

// The labeled rows minus their mean, for the screening of the labeled distances: stored by
// panels of 16 rows, transposed (panel t, column k: the 16 values at (t * d + k) * 16), so that
// one vector holds 16 labeled rows' k-th values; the last panel is padded with zero rows.
// norm[j] = |row j - mean| (0 for the padding).
struct LabeledScreen {
  std::int64_t nl = 0, panels = 0;
  std::vector<float> mean;  // d
  std::vector<float> panel;  // panels x d x 16
  std::vector<float> norm;   // panels x 16
};

LabeledScreen make_screen(const float* x, std::int64_t d, const std::int64_t* labeled,
                          std::int64_t nl) {
  LabeledScreen sc;
  sc.nl = nl;
  sc.panels = (nl + 15) / 16;
  std::vector<double> mean(static_cast<std::size_t>(d), 0.0);
  for (std::int64_t j = 0; j < nl; ++j)
    for (std::int64_t k = 0; k < d; ++k) mean[static_cast<std::size_t>(k)] += x[labeled[j] * d + k];
  sc.mean.resize(static_cast<std::size_t>(d));
  for (std::int64_t k = 0; k < d; ++k)
    sc.mean[static_cast<std::size_t>(k)] =
        static_cast<float>(mean[static_cast<std::size_t>(k)] / static_cast<double>(nl));
  sc.panel.assign(static_cast<std::size_t>(sc.panels * d * 16), 0.0f);
  sc.norm.assign(static_cast<std::size_t>(sc.panels * 16), 0.0f);
  for (std::int64_t j = 0; j < nl; ++j) {
    const std::int64_t t = j / 16, lane = j % 16;
    double q = 0.0;
    for (std::int64_t k = 0; k < d; ++k) {
      const float v = x[labeled[j] * d + k] - sc.mean[static_cast<std::size_t>(k)];
      sc.panel[static_cast<std::size_t>((t * d + k) * 16 + lane)] = v;
      q += static_cast<double>(v) * v;
    }
    sc.norm[static_cast<std::size_t>(j)] = static_cast<float>(std::sqrt(q));
  }
  return sc;
}

// Rows [begin, end) against all the labeled rows, screened. |x - l|^2 is approximated as
// |x'|^2 + |l'|^2 - 2 x'.l' on rows centred on the labeled mean (x' = x - mean), the dot products
// as a small matrix product (4 rows x 32 labeled rows per step, one FMA per element pair, no
// per-pair reduction: screen::dots, compiled with FMA contraction), with the error bound
// e = c (|x'| + |l'|)^2, c = 4 (d + 16) 2^-24, a generous multiple of the bound on the rounding
// of the centring, of the products and of their sums. Only the labeled rows whose approximation minus e is within the
// smallest (approximation + e), plus a relative 1e-4 + 4c above the rounding of sq_dist, get
// their exact sq_dist, in labeled order: the others are farther than the nearest one even after
// rounding, so min_d and nearest (lowest position on ties) are those of one sq_dist per pair.
// An approximation that overflows (NaN) stays a candidate. `scratch` holds
// 4 * (d + 16 * panels) floats.
DALCORE_MULTIVERSION
void screened_rows(const float* x, std::int64_t d, std::int64_t begin, std::int64_t end,
                   const std::int64_t* labeled, const LabeledScreen& sc, float* scratch,
                   float* min_d, std::int64_t* nearest) {
  constexpr int P = 4;
  const std::int64_t nl = sc.nl, width = 16 * sc.panels;
  const float c = 4.0f * static_cast<float>(d + 16) * 5.9604645e-8f;
  float* xc = scratch;              // P x d centred rows
  float* approx = scratch + P * d;  // P x width
  for (std::int64_t i0 = begin; i0 < end; i0 += P) {
    const std::int64_t np = std::min<std::int64_t>(P, end - i0);
    float rx[P], rx2[P];
    for (int p = 0; p < P; ++p) {
      const std::int64_t i = i0 + std::min<std::int64_t>(p, np - 1);
      float* r = xc + p * d;
      for (std::int64_t k = 0; k < d; ++k)
        r[k] = x[i * d + k] - sc.mean[static_cast<std::size_t>(k)];
      // |x'|^2 in 16 lanes (one dependent chain of d additions cost 10 ms on 60,000 x 128);
      // any order is within the screening bound, which covers d + 16 roundings
      const float q = kcenter_ops::sq_norm(r, d);
      rx2[p] = q;
      rx[p] = std::sqrt(q);
    }
    screen::dots(xc, d, sc.panel.data(), sc.norm.data(), sc.panels, rx2, approx, width);
    for (std::int64_t p = 0; p < np; ++p) {
      const std::int64_t i = i0 + p;
      float m = min_d[i];
      if (m < 0.0f) continue;  // a centre
      std::int64_t arg = nearest[i];
      float* ap = approx + p * width;
      for (std::int64_t j = nl; j < width; ++j) ap[j] = kInf;  // padding rows
      v16f ubv;
      for (int l = 0; l < 16; ++l) ubv[l] = m;
      for (std::int64_t j = 0; j < width; j += 16) {
        v16f a, nv;
        std::memcpy(&a, ap + j, sizeof(v16f));
        std::memcpy(&nv, sc.norm.data() + j, sizeof(v16f));
        const v16f e = rx[p] + nv;
        const v16f hi = a + c * e * e;
        ubv = hi < ubv ? hi : ubv;
      }
      float lanes[16];
      std::memcpy(lanes, &ubv, sizeof(lanes));
      float ub = lanes[0];
      for (int l = 1; l < 16; ++l) ub = lanes[l] < ub ? lanes[l] : ub;
      // 1e-4 + 4c: above the relative rounding of sq_dist (16 lane sums) for any d
      const float lim = ub * (1.0f + 1e-4f + 4.0f * c) + 1e-30f;
      const float* xi = x + i * d;
      for (std::int64_t j = 0; j < width; j += 16) {
        v16f a, nv;
        std::memcpy(&a, ap + j, sizeof(v16f));
        std::memcpy(&nv, sc.norm.data() + j, sizeof(v16f));
        const v16f e = rx[p] + nv;
        // -1 where provably farther; a NaN (an overflowed approximation) stays a candidate
        const v16i far = (a - c * e * e) > lim;
        std::int32_t flag[16];
        std::memcpy(flag, &far, sizeof(flag));
        std::int32_t all = -1;
        for (int l = 0; l < 16; ++l) all &= flag[l];
        if (all) continue;
        for (int l = 0; l < 16; ++l) {
          if (flag[l] || j + l >= nl) continue;
          const float sd = sq_dist(xi, x + labeled[j + l] * d, d);
          if (sd < m) {
            m = sd;
            arg = j + l;
          }
        }
      }
      min_d[i] = m;
      nearest[i] = arg;
    }
  }
}

// Rows [begin, end): min_d and nearest labeled position against the labeled rows
// [j0, j1) of `labeled` (a block that stays in cache while the rows stream past). Blocks of
// 4 rows x 2 labeled rows (sq_dist_block); the updates run in labeled order, so ties keep the
// lowest position as with one sq_dist per pair.
DALCORE_MULTIVERSION
void labeled_rows(const float* x, std::int64_t d, std::int64_t begin, std::int64_t end,
                  const std::int64_t* labeled, std::int64_t j0, std::int64_t j1, float* min_d,
                  std::int64_t* nearest) {
  constexpr int P = 4, L = 2;
  std::int64_t i = begin;
  for (; i + P <= end; i += P) {
    const float* xa[P];
    float m[P];
    std::int64_t arg[P];
    for (int p = 0; p < P; ++p) {
      xa[p] = x + (i + p) * d;
      m[p] = min_d[i + p];
      arg[p] = nearest[i + p];
    }
    std::int64_t j = j0;
    for (; j + L <= j1; j += L) {
      const float* xb[L];
      for (int q = 0; q < L; ++q) xb[q] = x + labeled[j + q] * d;
      float s[P * L];
      sq_dist_block<P, L>(xa, xb, d, s);
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < L; ++q)
          if (s[p * L + q] < m[p]) {
            m[p] = s[p * L + q];
            arg[p] = j + q;
          }
    }
    for (; j < j1; ++j) {
      const float* xb = x + labeled[j] * d;
      for (int p = 0; p < P; ++p) {
        const float s = sq_dist(xa[p], xb, d);
        if (s < m[p]) {
          m[p] = s;
          arg[p] = j;
        }
      }
    }
    for (int p = 0; p < P; ++p) {
      if (min_d[i + p] < 0.0f) continue;  // a centre keeps its sentinel
      min_d[i + p] = m[p];
      nearest[i + p] = arg[p];
    }
  }
  for (; i < end; ++i) {
    float m = min_d[i];
    if (m < 0.0f) continue;
    const float* xi = x + i * d;
    std::int64_t arg = nearest[i];
    for (std::int64_t j = j0; j < j1; ++j) {
      const float s = sq_dist(xi, x + labeled[j] * d, d);
      if (s < m) {
        m = s;
        arg = j;
      }
    }
    min_d[i] = m;
    nearest[i] = arg;
  }
}

// dist2[g] = squared distance from xc to the row of centre[g], for g in [g0, g1) (-1: none;
// then dist2[g] is left alone). Four centres per sq_dist_block.
DALCORE_MULTIVERSION
void centre_distances(const float* x, std::int64_t d, const std::int64_t* centre, std::int64_t g0,
                      std::int64_t g1, const float* xc, float* dist2) {
  constexpr int L = 4;
  const float* const a[1] = {xc};
  for (std::int64_t g = g0; g < g1; g += L) {
    const float* b[L];
    for (int q = 0; q < L; ++q) {
      const std::int64_t c = g + q < g1 ? centre[g + q] : -1;
      b[q] = c >= 0 ? x + c * d : xc;  // placeholder rows give 0, not stored
    }
    float s[L];
    sq_dist_block<1, L>(a, b, d, s);
    for (int q = 0; q < L && g + q < g1; ++q)
      if (centre[g + q] >= 0) dist2[g + q] = s[q];
  }
}

// One group of the pruned pass: its members[0, count), whose centre lies at squared distance
// dac2 from the new centre xc (dac2 < 0: no centre, no point can be cleared). A point p is
// cleared without reading its row when d(a, c) >= 2 d(p, a) (kcenter_ops::group_unaffected, the
// group test point by point); the others are read, with software prefetch a few rows ahead
// (the rows lie anywhere: the hardware prefetcher cannot follow). A point that gets closer to xc
// leaves for c's group (appended to `movers` with its new min-distance); centres (min_d < 0, the
// new centre itself) are dropped; the rest are compacted in place and their arg-max goes to
// `best`. With a projection (pb not null) a point the group test cannot clear is cleared, still
// without reading its row, when the projection bound proves c cannot lower its min-distance.
// `scratch` holds count indices. Returns the new member count; adds the rows read to
// `rows_read`.
DALCORE_MULTIVERSION
std::int64_t sweep_members(const float* x, std::int64_t d, const float* xc, float dac2,
                           const ProjectionBound* pb, std::int64_t c, std::int64_t* members,
                           std::int64_t count, float* min_d, std::int64_t* scratch,
                           std::vector<ArgMax>& movers, ArgMax& best,
                           std::int64_t& rows_read) {
  std::int64_t w = 0, nr = 0;
  const float* zc = pb ? pb->z.data() + c * pb->stride : nullptr;
  const float ec = pb ? pb->eps[static_cast<std::size_t>(c)] : 0.0f;
  for (std::int64_t u = 0; u < count; ++u) {
    const std::int64_t i = members[u];
    const float m = min_d[i];
    if (m < 0.0f) continue;
    if (kcenter_ops::group_unaffected(dac2, m) ||
        (pb && projection::skip(sq_dist(pb->z.data() + i * pb->stride, zc, pb->stride), m,
                                pb->eps[static_cast<std::size_t>(i)], ec, pb->factor,
                                pb->abs_slack, pb->abs_q))) {
      members[w++] = i;  // w <= u: never ahead of the reads
      if (kcenter_ops::beats(ArgMax{m, i}, best)) best = ArgMax{m, i};
    } else {
      scratch[nr++] = i;
    }
  }
  rows_read += nr;
  constexpr std::int64_t kAhead = 4;
  const std::int64_t row_bytes = d * static_cast<std::int64_t>(sizeof(float));
  auto prefetch_row = [&](std::int64_t i) {
    const char* r = reinterpret_cast<const char*>(x + i * d);
    for (std::int64_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(r + off);
  };
  for (std::int64_t k = 0; k < std::min(kAhead, nr); ++k) prefetch_row(scratch[k]);
  for (std::int64_t k = 0; k < nr; ++k) {
    if (k + kAhead < nr) prefetch_row(scratch[k + kAhead]);
    const std::int64_t i = scratch[k];
    const float m = min_d[i];
    const float s = sq_dist(x + i * d, xc, d);
    if (s < m) {
      min_d[i] = s;
      movers.push_back(ArgMax{s, i});
    } else {
      members[w++] = i;
      if (kcenter_ops::beats(ArgMax{m, i}, best)) best = ArgMax{m, i};
    }
  }
  return w;
}

// ---------------------------------------------------------------- parallel helpers

// Splits [0, n) into chunks handed out dynamically (a thread that the OS delays does not hold up
// the pick: the others take its chunks); the per-chunk arg-maxes are combined in chunk order
// with the lowest-index tie-break, so the result does not depend on threads or schedule.
template <class Fn>
ArgMax parallel_argmax(std::int64_t n, bool serial, Fn&& fn);
template <class Fn>
ArgMax parallel_argmax(std::int64_t n, Fn&& fn) {
  return parallel_argmax(n, false, std::forward<Fn>(fn));
}
template <class Fn>
ArgMax parallel_argmax(std::int64_t n, bool serial, Fn&& fn) {
  const std::int64_t nt = omp_get_max_threads();
  const std::int64_t chunk = std::max<std::int64_t>(2048, n / (8 * nt) + 1);
  const std::int64_t nc = (n + chunk - 1) / chunk;
  std::vector<ArgMax> part(static_cast<std::size_t>(nc), argmax_none());
#pragma omp parallel for schedule(dynamic, 1) if (nc > 1 && !serial)
  for (std::int64_t k = 0; k < nc; ++k)
    part[static_cast<std::size_t>(k)] = fn(k * chunk, std::min(n, (k + 1) * chunk));
  ArgMax best = argmax_none();
  for (const ArgMax& a : part) best = ArgMaxOp{}(best, a);
  return best;
}

// The mean in double over fixed blocks of rows (independent of the thread count), as float.
std::vector<float> column_mean(const float* x, std::int64_t n, std::int64_t d) {
  const std::int64_t nb = (n + kcenter_ops::kMeanBlock - 1) / kcenter_ops::kMeanBlock;
  std::vector<double> part(static_cast<std::size_t>(nb * d), 0.0);
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < nb; ++b) {
    double* acc = part.data() + b * d;
    const std::int64_t end = std::min(n, (b + 1) * kcenter_ops::kMeanBlock);
    for (std::int64_t i = b * kcenter_ops::kMeanBlock; i < end; ++i)
      for (std::int64_t k = 0; k < d; ++k) acc[k] += x[i * d + k];
  }
  std::vector<float> mean(static_cast<std::size_t>(d));
  for (std::int64_t k = 0; k < d; ++k) {
    double s = 0.0;
    for (std::int64_t b = 0; b < nb; ++b) s += part[static_cast<std::size_t>(b * d + k)];
    mean[static_cast<std::size_t>(k)] = static_cast<float>(s / static_cast<double>(n));
  }
  return mean;
}

ArgMax farthest_from_mean(const float* x, std::int64_t n, std::int64_t d) {
  const std::vector<float> mean = column_mean(x, n, d);
  return parallel_argmax(n, [&](std::int64_t b, std::int64_t e) {
    return farthest_rows(x, d, b, e, mean.data());
  });
}

// min_d against the labeled points; nearest[i] = position in `labeled` (lowest on ties).
// With `screen`, from 8 labeled rows on, screened by dot products (screened_rows: the same
// results, most pairs never get an exact distance); otherwise exact register blocks over every
// pair (blocked over the labeled set to stay in L2). (Screening by the projection bound instead
// was no faster: on Fashion-MNIST PCA-128 with m = 32 a row still had many labeled rows its
// bound could not clear, each an exact distance.)
void init_labeled(const float* x, std::int64_t n, std::int64_t d, const std::int64_t* labeled,
                  std::int64_t n_labeled, float* min_d, std::int64_t* nearest, bool screen) {
  constexpr std::int64_t kRows = 256;
  const std::int64_t nrb = (n + kRows - 1) / kRows;
  if (screen && n_labeled >= 8) {
    const LabeledScreen sc = make_screen(x, d, labeled, n_labeled);
    detail::OmpGuard guard;
#pragma omp parallel
    {
      std::vector<float> scratch;
      guard.run([&] { scratch.resize(static_cast<std::size_t>(4 * (d + 16 * sc.panels))); });
#pragma omp for schedule(static)
      for (std::int64_t rb = 0; rb < nrb; ++rb)
        guard.run([&] {  // skipped once any thread failed (its scratch may be missing)
          screened_rows(x, d, rb * kRows, std::min(n, (rb + 1) * kRows), labeled, sc,
                        scratch.data(), min_d, nearest);
        });
    }
    guard.rethrow();
    return;
  }
  // Labeled rows per block: about 256 KiB of them, to stay in L2 while all rows stream by.
  const std::int64_t jb = std::max<std::int64_t>(1, (std::int64_t{1} << 16) / d);
  for (std::int64_t j0 = 0; j0 < n_labeled; j0 += jb) {
    const std::int64_t j1 = std::min(n_labeled, j0 + jb);
#pragma omp parallel for schedule(static)
    for (std::int64_t rb = 0; rb < nrb; ++rb)
      labeled_rows(x, d, rb * kRows, std::min(n, (rb + 1) * kRows), labeled, j0, j1, min_d,
                   nearest);
  }
}

// ---------------------------------------------------------------- unpruned

double run_unpruned(const float* x, std::int64_t n, std::int64_t d, std::int64_t n_labeled,
                    std::int64_t budget, std::int64_t* out, std::vector<float>& min_d,
                    bool want_radius) {
  ArgMax best;
  if (n_labeled > 0) {
    best = parallel_argmax(n, [&](std::int64_t b, std::int64_t e) {
      return scan_rows(x, d, b, e, -1, min_d.data());
    });
  } else {
    best = farthest_from_mean(x, n, d);
  }
  PassThreads threads(omp_get_max_threads());
  for (std::int64_t t = 0; t < budget; ++t) {
    const std::int64_t c = best.index;
    out[t] = c;
    min_d[static_cast<std::size_t>(c)] = kCenter;
    if (t + 1 < budget || want_radius) {
      threads.start();
      best = parallel_argmax(n, threads.serial(), [&](std::int64_t b, std::int64_t e) {
        return scan_rows(x, d, b, e, c, min_d.data());
      });
      threads.stop();
    }
  }
  if (!want_radius) return -1.0;
  return best.index >= 0 ? std::sqrt(static_cast<double>(std::max(best.value, 0.0f))) : 0.0;
}

// ---------------------------------------------------------------- pruned

// Points grouped by the centre that gives their min-distance, each group a list of its members.
// A pick visits only the members of the groups the new centre may affect: no pass over all N.
class PrunedState {
 public:
  // Members to visit below which a pick runs on one thread. On a quiet machine even a few
  // hundred members gained from the second thread (N = 50k, d = 128, 1000 picks: thresholds of
  // 0-512 ran 20-35 % faster than 4096-16384), but on a loaded one a fork/join per pick waits
  // for a descheduled thread: trained-network features, 60,000 x 128, at load 3.8 on 2 cores,
  // took 10.2 s with 256 (0.42 s in a quieter minute), 2.7 s with 2^14 (14,600 members per
  // pick on average; 0.25 s on one thread). 2^16 members: ~0.5 ms of work on one core.
  static constexpr std::int64_t kParallelMembers = std::int64_t{1} << 16;

  PrunedState(const float* x, std::int64_t n, std::int64_t d, std::int64_t max_groups,
              std::vector<float>& min_d, const ProjectionBound* pb)
      : x_(x), n_(n), d_(d), pb_(pb), min_d_(min_d), dac2_(static_cast<std::size_t>(max_groups), -1.0f),
        nthreads_(omp_get_max_threads()), scratch_(static_cast<std::size_t>(nthreads_)),
        movers_(static_cast<std::size_t>(nthreads_)),
        read_(static_cast<std::size_t>(nthreads_), 0) {
    centre_.reserve(static_cast<std::size_t>(max_groups));
    best_.reserve(static_cast<std::size_t>(max_groups));
    members_.reserve(static_cast<std::size_t>(max_groups));
  }

  // Groups from the labeled points (nearest[i] = position in `labeled`), members in index order.
  void init_groups(const std::int64_t* labeled, std::int64_t n_labeled,
                   const std::vector<std::int64_t>& nearest) {
    centre_.assign(labeled, labeled + n_labeled);
    best_.assign(static_cast<std::size_t>(n_labeled), argmax_none());
    members_.assign(static_cast<std::size_t>(n_labeled), {});
    for (std::int64_t i = 0; i < n_; ++i) {
      const float m = min_d_[static_cast<std::size_t>(i)];
      if (m < 0.0f) continue;
      const auto g = static_cast<std::size_t>(nearest[static_cast<std::size_t>(i)]);
      members_[g].push_back(i);
      if (kcenter_ops::beats(ArgMax{m, i}, best_[g])) best_[g] = ArgMax{m, i};
    }
  }

  // Nothing labeled: one group without a centre (never pruned) holding every point.
  void init_all() {
    centre_.assign(1, -1);
    // Marks the group as non-empty (scanned by the first centre, which moves every point out).
    best_.assign(1, ArgMax{kInf, 0});
    members_.assign(1, {});
    members_[0].reserve(static_cast<std::size_t>(n_));
    for (std::int64_t i = 0; i < n_; ++i) members_[0].push_back(i);
  }

  // Members the last add_centre visited.
  std::int64_t visited() const { return visited_; }

  // Rows whose features the last add_centre read.
  std::int64_t rows_read() const {
    std::int64_t r = 0;
    for (const std::int64_t v : read_) r += v;
    return r;
  }

  ArgMax global_best(std::int64_t* group) const {
    ArgMax b = argmax_none();
    std::int64_t g_best = -1;
    for (std::size_t g = 0; g < best_.size(); ++g)
      if (kcenter_ops::beats(best_[g], b)) {
        b = best_[g];
        g_best = static_cast<std::int64_t>(g);
      }
    if (group) *group = g_best;
    return b;
  }

  // Adds centre c, the arg-max of group g_of_c (-1: from no group, e.g. the mean pick).
  void add_centre(std::int64_t c, std::int64_t g_of_c) {
    min_d_[static_cast<std::size_t>(c)] = kCenter;
    const float* xc = x_ + c * d_;
    const std::int64_t ng = static_cast<std::int64_t>(centre_.size());
    // Which groups can c affect? O(#groups * d); on all threads from 2^20 floats (~0.1 ms of
    // work on one core: a fork/join on a loaded machine can cost a time slice, see above).
    constexpr std::int64_t kGroupBlock = 256;
    const std::int64_t ngb = (ng + kGroupBlock - 1) / kGroupBlock;
#pragma omp parallel for schedule(static) if (ng * d_ > (1 << 20))
    for (std::int64_t gb = 0; gb < ngb; ++gb)
      centre_distances(x_, d_, centre_.data(), gb * kGroupBlock,
                       std::min(ng, (gb + 1) * kGroupBlock), xc, dac2_.data());
    scanned_.clear();
    std::int64_t visit = 0;
    for (std::int64_t g = 0; g < ng; ++g) {
      const ArgMax& b = best_[static_cast<std::size_t>(g)];
      const std::int64_t a = centre_[static_cast<std::size_t>(g)];
      bool scan = b.index >= 0;  // empty groups have nothing to update
      float dac2 = -1.0f;        // no centre: no point can be skipped
      if (scan && a >= 0) {
        dac2 = dac2_[static_cast<std::size_t>(g)];
        // c's own group is always swept: c has to leave it and its arg-max (c) be replaced.
        if (g != g_of_c) scan = !kcenter_ops::group_unaffected(dac2, b.value);
      }
      dac2_[static_cast<std::size_t>(g)] = dac2;
      if (scan) {
        scanned_.push_back(static_cast<std::int32_t>(g));
        visit += static_cast<std::int64_t>(members_[static_cast<std::size_t>(g)].size());
      }
    }
    visited_ = visit;
    std::fill(read_.begin(), read_.end(), 0);
    for (auto& mv : movers_) mv.clear();
    // Groups swept on several threads, whole groups at a time (largest first would balance
    // better, but groups are small after the first picks).
    const std::int64_t ns = static_cast<std::int64_t>(scanned_.size());
    detail::OmpGuard guard;  // scratch and movers grow inside the region
#pragma omp parallel for schedule(dynamic, 1) if (visit > kParallelMembers)
    for (std::int64_t k = 0; k < ns; ++k) {
      guard.run([&] {
        const auto tid = static_cast<std::size_t>(omp_get_thread_num());
        const auto g = static_cast<std::size_t>(scanned_[static_cast<std::size_t>(k)]);
        std::vector<std::int64_t>& mem = members_[g];
        std::vector<std::int64_t>& scratch = scratch_[tid];
        if (scratch.size() < mem.size()) scratch.resize(mem.size());
        ArgMax best = argmax_none();
        const std::int64_t kept = sweep_members(
            x_, d_, xc, dac2_[g], pb_, c, mem.data(), static_cast<std::int64_t>(mem.size()),
            min_d_.data(), scratch.data(), movers_[tid], best, read_[tid]);
        mem.resize(static_cast<std::size_t>(kept));
        best_[g] = best;
      });
    }
    guard.rethrow();
    // c's group: the points that got closer to c, from every thread.
    centre_.push_back(c);
    members_.emplace_back();
    ArgMax best = argmax_none();
    std::vector<std::int64_t>& mine = members_.back();
    for (const auto& mv : movers_)
      for (const ArgMax& a : mv) {
        mine.push_back(a.index);
        if (kcenter_ops::beats(a, best)) best = a;
      }
    best_.push_back(best);
  }

 private:
  const float* x_;
  std::int64_t n_, d_;
  const ProjectionBound* pb_;  // null: no projection bound
  std::vector<float>& min_d_;
  std::vector<float> dac2_;                         // per group: squared distance centre - c
  std::int64_t nthreads_;
  std::vector<std::vector<std::int64_t>> scratch_;  // per thread: rows of a group to read
  std::vector<std::vector<ArgMax>> movers_;         // per thread: points that joined c's group
  std::vector<std::int64_t> read_;                  // per thread: rows read by the last pick
  std::vector<std::int64_t> centre_;                // point index of each group's centre (-1: none)
  std::vector<ArgMax> best_;                        // arg-max of min_d within each group
  std::vector<std::vector<std::int64_t>> members_;  // the (non-centre) points of each group
  std::vector<std::int32_t> scanned_;               // groups of the current pick
  std::int64_t visited_ = 0;                        // members visited by the current pick
};

// The thread choice of each kind of full pass (their costs differ).
struct FullPassThreads {
  PassThreads plain{omp_get_max_threads()}, proj{omp_get_max_threads()};
};

// One pick by a pass over all rows: plain (every row read) or through the projection bound.
// *full_rows: the rows read in full.
ArgMax full_pass(const float* x, std::int64_t n, std::int64_t d, const ProjectionBound* pb,
                 coarse::CoarsePasses* cp, std::int64_t c, std::vector<float>& min_d,
                 KCenterStats* stats, std::int64_t* full_rows, FullPassThreads& threads) {
  *full_rows = n;
  min_d[static_cast<std::size_t>(c)] = kCenter;
  if (!pb) {
    if (stats) stats->full_rows += n;
    threads.plain.start();
    const ArgMax best =
        parallel_argmax(n, threads.plain.serial(), [&](std::int64_t b, std::int64_t e) {
          return scan_rows(x, d, b, e, c, min_d.data());
        });
    threads.plain.stop();
    return best;
  }
  std::int64_t full = 0, proj = 0, coarse = 0;
  // A pass through the projection is short (N (m + 2) floats): on a loaded machine a fork/join
  // costs more than it saves (a descheduled thread holds the join for a time slice: 2 threads ran
  // 10x slower than one on 20,000 x 784 pixels, m = 32, at load 4 on 2 cores), on a quiet one
  // both threads win: the passes' own wall times decide (kcenter_pass_threads.h).
  threads.proj.start();
  const bool one = threads.proj.serial();
  if (cp) {  // the int8 copy: one integer test per row (kcenter_coarse.h)
    projection::ReadCount rc;
    const ArgMax best = cp->add_centre(c, one, rc);
    threads.proj.stop();
    if (stats) {
      stats->full_rows += rc.full;
      stats->projected_rows += rc.projected;
      stats->coarse_rows += rc.coarse;
    }
    *full_rows = rc.full;
    return best;
  }
  const ArgMax best = parallel_argmax(n, one, [&](std::int64_t b, std::int64_t e) {
    projection::ReadCount rc;
    const ArgMax a = projection::projected_rows(x, d, *pb, b, e, c, min_d.data(), rc);
#pragma omp atomic
    full += rc.full;
#pragma omp atomic
    proj += rc.projected;
#pragma omp atomic
    coarse += rc.coarse;
    return a;
  });
  threads.proj.stop();
  if (stats) {
    stats->full_rows += full;
    stats->projected_rows += proj;
    stats->coarse_rows += coarse;
  }
  *full_rows = full;
  return best;
}

// When the pruned sweeps stop paying (they visit most points: the triangle inequality keeps
// failing, e.g. pixels or isotropic data), the remaining picks use full passes (through the
// projection bound when there is one). A visit costs a random access (and, without a projection,
// often a random row read), a full pass reads in order: hand over when the sweeps visited more
// than half of the candidates for kDenseStreak picks in a row. (Pixels, 20,000 x 784, no
// projection: sweeps visiting 90 % and reading 29 % of the rows were 1.6x slower than the plain
// pass; the former rule, 90 % of the rows read for 16 picks, never handed over.)
// With an int8 copy a full pass costs one integer test per row (stride + 4 bytes, in order,
// kcenter_coarse.h), a visit a random read of a float32 projection: hand over from a quarter.
// (Photo patches, 60,000 x 192: sweeps visiting 37 % of the candidates per pick took 0.36 s for
// 1000 picks, handed over to the coarse passes 0.145 s, with m = 24.)
bool sweep_was_dense(const PrunedState& st, std::int64_t candidates, bool coarse) {
  return (coarse ? 4 : 2) * st.visited() >= candidates;
}

// Without a projection, a first sweep that would visit nearly every candidate (isotropic data:
// 100 % of them; clustered and trained-network features: 30-35 %, PCA and DeepCluster features
// 60-72 %) shows the triangle inequality cannot pay: the plain pass from the first pick. Decided
// before any group is built, from the labeled groups' sizes and largest min-distances (the
// numbers add_centre would compute), so such pools pay neither the groups nor the sweep.
// Returns whether the first pick, c (the arg-max of min_d), would visit 90 % of the candidates.
bool first_sweep_dense(const float* x, std::int64_t n, std::int64_t d,
                       const std::int64_t* labeled, std::int64_t n_labeled,
                       const std::vector<float>& min_d, const std::vector<std::int64_t>& nearest,
                       std::int64_t c) {
  std::vector<std::int64_t> size(static_cast<std::size_t>(n_labeled), 0);
  std::vector<float> r2(static_cast<std::size_t>(n_labeled), -1.0f), dac2(size.size(), -1.0f);
  for (std::int64_t i = 0; i < n; ++i) {
    const float m = min_d[static_cast<std::size_t>(i)];
    if (m < 0.0f) continue;
    const auto g = static_cast<std::size_t>(nearest[static_cast<std::size_t>(i)]);
    ++size[g];
    r2[g] = std::max(r2[g], m);
  }
  centre_distances(x, d, labeled, 0, n_labeled, x + c * d, dac2.data());
  const std::int64_t gc = nearest[static_cast<std::size_t>(c)];
  std::int64_t visit = 0;
  for (std::int64_t g = 0; g < n_labeled; ++g) {
    const auto k = static_cast<std::size_t>(g);
    if (size[k] > 0 && (g == gc || !kcenter_ops::group_unaffected(dac2[k], r2[k])))
      visit += size[k];
  }
  return 10 * visit >= 9 * (n - n_labeled - 1);
}

double run_pruned(const float* x, std::int64_t n, std::int64_t d, const std::int64_t* labeled,
                  std::int64_t n_labeled, std::int64_t budget, std::int64_t* out,
                  std::vector<float>& min_d, const std::vector<std::int64_t>& nearest,
                  bool want_radius, const ProjectionBound* pb, KCenterStats* stats) {
  if (n_labeled + budget + 2 >= std::numeric_limits<std::int32_t>::max())
    return run_unpruned(x, n, d, n_labeled, budget, out, min_d, want_radius);
  // Groups: one per labeled point (or the initial one without labels), then one per pick.
  PrunedState st(x, n, d, n_labeled + budget + 2, min_d, pb);
  ArgMax best;
  std::int64_t group = -1;
  bool dense = false;
  if (n_labeled > 0 && !pb) {
    best = parallel_argmax(n, [&](std::int64_t b, std::int64_t e) {  // the arg-max of min_d
      return scan_rows(x, d, b, e, -1, min_d.data());
    });
    dense = best.index >= 0 && first_sweep_dense(x, n, d, labeled, n_labeled, min_d, nearest,
                                                 best.index);
  }
  if (dense) {
    // the plain pass from the first pick: no groups
  } else if (n_labeled > 0) {
    st.init_groups(labeled, n_labeled, nearest);
    best = st.global_best(&group);
  } else {
    st.init_all();
    best = farthest_from_mean(x, n, d);
    group = -1;
  }
  constexpr std::int64_t kMinPicks = 8, kDenseStreak = 4;
  std::int64_t streak = 0, useless = 0;
  FullPassThreads threads;  // of the full passes after the hand-over
  std::optional<coarse::CoarsePasses> cp;  // their state with an int8 copy
  for (std::int64_t t = 0; t < budget; ++t) {
    const std::int64_t c = best.index;
    out[t] = c;
    if (t + 1 >= budget && !want_radius) break;
    if (dense) {
      if (pb && !pb->kb.empty() && !cp) cp.emplace(x, n, d, *pb, min_d);
      std::int64_t full = 0;
      best = full_pass(x, n, d, pb, pb && cp ? &*cp : nullptr, c, min_d, stats, &full, threads);
      if (stats) ++stats->dense_picks;
      // Where the projection clears few rows (isotropic data: no direction dominates) it only
      // adds its own reads: after kDenseStreak passes that read over half the rows in full,
      // the plain pass takes over (the same min-distances either way).
      useless = pb && 2 * full >= n ? useless + 1 : 0;
      if (useless >= kDenseStreak) pb = nullptr;
      continue;
    }
    st.add_centre(c, group);
    best = st.global_best(&group);
    if (stats) {
      stats->visited += st.visited();
      stats->full_rows += st.rows_read();
      if (pb) stats->projected_rows += st.visited() - st.rows_read();
    }
    const std::int64_t candidates = n - n_labeled - (t + 1);
    streak = sweep_was_dense(st, candidates, pb && !pb->kb.empty()) ? streak + 1 : 0;
    dense = t + 1 >= kMinPicks && streak >= kDenseStreak;
    // Nothing labeled: the same rule (first_sweep_dense) after the first sweep.
    if (t == 0 && !pb && 10 * st.visited() >= 9 * candidates) dense = true;
  }
  if (!want_radius) return -1.0;
  return best.index >= 0 ? std::sqrt(static_cast<double>(std::max(best.value, 0.0f))) : 0.0;
}

}  // namespace

void kcenter(const float* features, std::int64_t n, std::int64_t d, const std::int64_t* labeled,
             std::int64_t n_labeled, std::int64_t budget, std::int64_t* out, double* radius,
             const KCenterOptions& opts) {
  check_kcenter_sizes(n, d, n_labeled, budget);
  require(features != nullptr && out != nullptr, "features/out: null pointer");
  require(n_labeled == 0 || labeled != nullptr, "labeled: null pointer");

  std::vector<float> min_d(static_cast<std::size_t>(n), kInf);
  for (std::int64_t j = 0; j < n_labeled; ++j) {
    const std::int64_t l = labeled[j];
    require(l >= 0 && l < n, "labeled: indices must be in [0, ", n, "), got ", l);
    require(min_d[static_cast<std::size_t>(l)] >= 0.0f, "labeled: contains duplicated index ", l);
    min_d[static_cast<std::size_t>(l)] = kCenter;
  }
  // Below 2^20 floats (4 MiB: the pool stays in cache) the plain pass is the fastest: the
  // pruned bookkeeping and its fork/joins cost more than they save (digits, 1,797 x 64, 1000
  // picks: pruned 3x slower than plain on a loaded 2-core machine). A projection, when given,
  // is still used, and prune_small forces the pruned path (tests).
  const bool small =
      n * d < (std::int64_t{1} << 20) && opts.projection.m == 0 && !opts.prune_small;
  const bool pruned = opts.prune && !small;
  const KCenterProjection& p = opts.projection;
  ProjectionBound pb;
  if (pruned && p.m > 0) {
    require(p.basis != nullptr && p.mean != nullptr, "projection: null pointer");
    pb = projection::make_bound(features, n, d, p.basis, p.mean, p.m);
  }
  const ProjectionBound* bound = pruned && p.m > 0 ? &pb : nullptr;
  std::vector<std::int64_t> nearest;
  if (n_labeled > 0) {
    nearest.assign(static_cast<std::size_t>(n), 0);
    // The unpruned path is the plain one: every distance exact, no screening either (the tests
    // compare the two paths pick for pick); a small pool takes the plain path all through.
    init_labeled(features, n, d, labeled, n_labeled, min_d.data(), nearest.data(), pruned);
  }
  const bool want_radius = radius != nullptr;
  if (opts.stats) *opts.stats = KCenterStats{};
  double r;
  if (pruned) {
    r = run_pruned(features, n, d, labeled, n_labeled, budget, out, min_d, nearest, want_radius,
                   bound, opts.stats);
  } else {
    r = run_unpruned(features, n, d, n_labeled, budget, out, min_d, want_radius);
    if (opts.stats) opts.stats->full_rows = n * budget;
  }
  if (want_radius) *radius = r;
}

}  // namespace dalcore::cpu
