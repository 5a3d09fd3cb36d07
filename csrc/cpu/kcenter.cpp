// CPU kernel of greedy k-center (OpenMP).
//
// State: min_d[i], the squared distance of point i to its nearest centre (labeled points and
// picks; centres hold the sentinel kCenter). A pick is the arg-max of min_d (lowest index on ties);
// adding centre c updates min_d[i] = min(min_d[i], |x_i - x_c|^2). Memory beyond the features is
// O(N): min_d, and for the pruned path a group id per point.
//
// Unpruned: one fused pass over the rows per pick (distance, min update, arg-max per chunk; the
// chunks' results are combined in chunk order with the lowest-index tie-break, so the pick does not
// depend on the number of threads or the schedule).
//
// Pruned: points are grouped by the centre that gives their min-distance (group[i]). When c is
// added, a group with centre a and largest squared min-distance r2 is skipped when
// d(a, c) >= 2 sqrt(r2) (with a small safety margin, see kcenter_ops::group_unaffected): by the
// triangle inequality none of its points gets closer to c. One sweep in index order then reads
// only the rows of the other groups (software prefetch, since skipping rows defeats the hardware
// prefetcher); a point that gets closer to c joins c's group. Each group keeps its arg-max and
// size, so a pick is an arg-max over groups. Same min-distances, hence the same picks, as the
// unpruned pass. The cost per pick is O(#centres * d) for the test, O(N) int reads for the sweep
// and d floats per row of the groups c can affect.
//
// The row loops are compiled for AVX-512, AVX2 and baseline x86-64 (GCC function
// multiversioning, chosen at run time) so the binary stays portable.
#include "dalcore/kcenter.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "dalcore/detail/kcenter_ops.h"
#include "dalcore/detail/multiversion.h"
#include "dalcore/status.h"


namespace dalcore::cpu {
namespace {

using kcenter_ops::ArgMax;
using kcenter_ops::ArgMaxOp;
using kcenter_ops::argmax_none;
using kcenter_ops::kCenter;
using kcenter_ops::sq_dist;

constexpr float kInf = std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------- row loops (multiversioned)

// Rows [begin, end): add centre c (c < 0: none) to min_d, return the arg-max of min_d there.
DALCORE_MULTIVERSION
ArgMax scan_rows(const float* x, std::int64_t d, std::int64_t begin, std::int64_t end,
                 std::int64_t c, float* min_d) {
  ArgMax best = argmax_none();
  const float* xc = c >= 0 ? x + c * d : nullptr;
  for (std::int64_t i = begin; i < end; ++i) {
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

// Rows [begin, end) of the pruned pass: only rows whose group is flagged in `scan` are read.
// A row that gets closer to c moves to group g_new. best[g] collects the arg-max of the rows of
// group g seen here and count[g] their number (this thread's slots; only flagged groups and
// g_new are written). Returns the number of rows read. `rows` is scratch for end - begin indices: the rows to read are listed
// first, then read with software prefetch a few rows ahead (skipping rows defeats the hardware
// prefetcher).
DALCORE_MULTIVERSION
std::int64_t scan_groups(const float* x, std::int64_t d, std::int64_t begin, std::int64_t end,
                 const float* xc, std::int32_t g_new, const unsigned char* scan, float* min_d,
                 std::int32_t* group, const float* dac2, ArgMax* best, std::int64_t* count,
                 std::int64_t* rows) {
  // The block's points in scanned groups, listed without a branch (which group a point is in
  // follows no pattern: a test per point would mispredict); `rows` holds them, then the rows to
  // read (never more than the listed points, written behind the read position).
  std::int64_t nl = 0;
  for (std::int64_t i = begin; i < end; ++i) {
    rows[nl] = i;
    nl += scan[group[i]];  // centres sit in a group that is never scanned
  }
  std::int64_t nr = 0;
  for (std::int64_t u = 0; u < nl; ++u) {
    const std::int64_t i = rows[u];
    const std::int32_t g = group[i];
    const float m = min_d[i];
    // The same test point by point: p is unaffected when d(a, c) >= 2 d(p, a); its row need not
    // be read, it stays in its group.
    if (kcenter_ops::group_unaffected(dac2[g], m)) {
      ++count[g];
      if (kcenter_ops::beats(ArgMax{m, i}, best[g])) best[g] = ArgMax{m, i};
    } else {
      rows[nr++] = i;
    }
  }
  // Nearly every row of the block to read: the hardware prefetcher does the job.
  const std::int64_t kAhead = 4 * nr > 3 * (end - begin) ? 0 : 4;
  const std::int64_t row_bytes = d * static_cast<std::int64_t>(sizeof(float));
  for (std::int64_t k = 0; k < std::min(kAhead, nr); ++k)
    for (std::int64_t off = 0; off < row_bytes; off += 64)
      __builtin_prefetch(reinterpret_cast<const char*>(x + rows[k] * d) + off);
  for (std::int64_t k = 0; k < nr; ++k) {
    if (kAhead > 0 && k + kAhead < nr) {
      const char* next = reinterpret_cast<const char*>(x + rows[k + kAhead] * d);
      for (std::int64_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(next + off);
    }
    const std::int64_t i = rows[k];
    const std::int32_t g = group[i];
    const float m = min_d[i];
    const float s = sq_dist(x + i * d, xc, d);
    if (s < m) {
      min_d[i] = s;
      group[i] = g_new;
      ++count[g_new];
      // beats(): blocks may reach a thread out of index order, so ties need the index test.
      if (kcenter_ops::beats(ArgMax{s, i}, best[g_new])) best[g_new] = ArgMax{s, i};
    } else {
      ++count[g];
      if (kcenter_ops::beats(ArgMax{m, i}, best[g])) best[g] = ArgMax{m, i};
    }
  }
  return nr;
}

// ---------------------------------------------------------------- parallel helpers

// Splits [0, n) into chunks handed out dynamically (a thread that the OS delays does not hold up
// the pick: the others take its chunks); the per-chunk arg-maxes are combined in chunk order
// with the lowest-index tie-break, so the result does not depend on threads or schedule.
template <class Fn>
ArgMax parallel_argmax(std::int64_t n, Fn&& fn) {
  const std::int64_t nt = omp_get_max_threads();
  const std::int64_t chunk = std::max<std::int64_t>(2048, n / (8 * nt) + 1);
  const std::int64_t nc = (n + chunk - 1) / chunk;
  std::vector<ArgMax> part(static_cast<std::size_t>(nc), argmax_none());
#pragma omp parallel for schedule(dynamic, 1) if (nc > 1)
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

// min_d against the labeled points (blocked over them); nearest[i] = position in `labeled`.
void init_labeled(const float* x, std::int64_t n, std::int64_t d, const std::int64_t* labeled,
                  std::int64_t n_labeled, float* min_d, std::int64_t* nearest) {
  // Labeled rows per block: about 256 KiB of them, to stay in L2 while all rows stream by.
  const std::int64_t jb = std::max<std::int64_t>(1, (std::int64_t{1} << 16) / d);
  constexpr std::int64_t kRows = 256;
  const std::int64_t nrb = (n + kRows - 1) / kRows;
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
  for (std::int64_t t = 0; t < budget; ++t) {
    const std::int64_t c = best.index;
    out[t] = c;
    min_d[static_cast<std::size_t>(c)] = kCenter;
    if (t + 1 < budget || want_radius)
      best = parallel_argmax(n, [&](std::int64_t b, std::int64_t e) {
        return scan_rows(x, d, b, e, c, min_d.data());
      });
  }
  if (!want_radius) return -1.0;
  return best.index >= 0 ? std::sqrt(static_cast<double>(std::max(best.value, 0.0f))) : 0.0;
}

// ---------------------------------------------------------------- pruned

// Points grouped by the centre that gives their min-distance (group[i]); one sweep per pick in
// index order over the points of the groups the new centre may affect.
class PrunedState {
 public:
  // Floats to read below which a sweep runs on one thread.
  static constexpr std::int64_t kParallelWork = std::int64_t{1} << 17;
  // Rows per block of a sweep.
  static constexpr std::int64_t kRows = 2048;

  PrunedState(const float* x, std::int64_t n, std::int64_t d, std::int64_t max_groups,
              std::vector<float>& min_d)
      : x_(x), n_(n), d_(d), min_d_(min_d), group_(static_cast<std::size_t>(n), 0),
        scan_(static_cast<std::size_t>(max_groups), 0),
        dac2_(static_cast<std::size_t>(max_groups), -1.0f),
        nthreads_(omp_get_max_threads()),
        tbest_(static_cast<std::size_t>(nthreads_ * max_groups), argmax_none()),
        tcount_(static_cast<std::size_t>(nthreads_ * max_groups), 0),
        rows_(static_cast<std::size_t>(nthreads_ * kRows)),
        read_(static_cast<std::size_t>(nthreads_), 0),
        centre_group_(static_cast<std::int32_t>(max_groups - 1)) {
    centre_.reserve(static_cast<std::size_t>(max_groups));
    best_.reserve(static_cast<std::size_t>(max_groups));
  }

  // Groups from the labeled points (nearest[i] = position in `labeled`).
  void init_groups(const std::int64_t* labeled, std::int64_t n_labeled,
                   const std::vector<std::int64_t>& nearest) {
    for (std::int64_t i = 0; i < n_; ++i)
      group_[static_cast<std::size_t>(i)] = min_d_[static_cast<std::size_t>(i)] >= 0.0f
                                                ? static_cast<std::int32_t>(nearest[i])
                                                : centre_group_;
    centre_.assign(labeled, labeled + n_labeled);
    best_.assign(static_cast<std::size_t>(n_labeled), argmax_none());
    size_.assign(static_cast<std::size_t>(n_labeled), 0);
    for (std::int64_t i = 0; i < n_; ++i)
      if (min_d_[static_cast<std::size_t>(i)] >= 0.0f) ++size_[static_cast<std::size_t>(nearest[i])];
    scanned_.clear();
    for (std::int64_t g = 0; g < n_labeled; ++g) scanned_.push_back(static_cast<std::int32_t>(g));
    sweep(nullptr, -1);
  }

  // Nothing labeled: one group without a centre (never pruned) holding every point.
  void init_all() {
    centre_.assign(1, -1);
    // Marks the group as non-empty (scanned by the first centre, which moves every point out).
    best_.assign(1, ArgMax{kInf, 0});
    size_.assign(1, n_);
  }

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
    group_[static_cast<std::size_t>(c)] = centre_group_;
    const float* xc = x_ + c * d_;
    const std::int64_t ng = static_cast<std::int64_t>(centre_.size());
    // Which groups can c affect? O(#groups * d); on all threads from 2^16 floats (~8 us of work
    // on one core, several times a fork/join).
    constexpr std::int64_t kGroupBlock = 256;
    const std::int64_t ngb = (ng + kGroupBlock - 1) / kGroupBlock;
#pragma omp parallel for schedule(static) if (ng * d_ > (1 << 16))
    for (std::int64_t gb = 0; gb < ngb; ++gb)
      centre_distances(x_, d_, centre_.data(), gb * kGroupBlock,
                       std::min(ng, (gb + 1) * kGroupBlock), xc, dac2_.data());
    for (std::int64_t g = 0; g < ng; ++g) {
      const ArgMax& b = best_[static_cast<std::size_t>(g)];
      const std::int64_t a = centre_[static_cast<std::size_t>(g)];
      bool scan = b.index >= 0;  // empty groups have nothing to update
      float dac2 = -1.0f;        // no centre: no point can be skipped
      if (scan && a >= 0) {
        dac2 = dac2_[static_cast<std::size_t>(g)];
        // c's own group is always swept: its arg-max (c) has to be replaced.
        if (g != g_of_c) scan = !kcenter_ops::group_unaffected(dac2, b.value);
      }
      scan_[static_cast<std::size_t>(g)] = scan ? 1 : 0;
      dac2_[static_cast<std::size_t>(g)] = dac2;
    }
    std::fill(read_.begin(), read_.end(), 0);
    scanned_.clear();
    for (std::int64_t g = 0; g < ng; ++g)
      if (scan_[static_cast<std::size_t>(g)]) scanned_.push_back(static_cast<std::int32_t>(g));
    centre_.push_back(c);
    best_.push_back(argmax_none());
    size_.push_back(0);
    scan_[static_cast<std::size_t>(ng)] = 0;
    if (!scanned_.empty()) sweep(xc, static_cast<std::int32_t>(ng));
  }

 private:
  // One sweep over the rows of the scanned groups (with xc: add that centre, moving points to
  // g_new; without: just the arg-maxes). Recomputes best_ of the scanned groups and g_new.
  void sweep(const float* xc, std::int32_t g_new) {
    const std::int64_t mg = static_cast<std::int64_t>(scan_.size());
    for (const std::int32_t g : scanned_) scan_[static_cast<std::size_t>(g)] = 1;
    for (std::int64_t t = 0; t < nthreads_; ++t) {
      ArgMax* tb = tbest_.data() + t * mg;
      std::int64_t* tc = tcount_.data() + t * mg;
      for (const std::int32_t g : scanned_) {
        tb[g] = argmax_none();
        tc[g] = 0;
      }
      if (g_new >= 0) {
        tb[g_new] = argmax_none();
        tc[g_new] = 0;
      }
    }
    // Rows to read; a short sweep runs on one thread (waking the others would cost more).
    std::int64_t rows = 0;
    for (const std::int32_t g : scanned_) rows += size_[static_cast<std::size_t>(g)];
    const bool parallel = rows * d_ + n_ / 4 > kParallelWork;
    const std::int64_t nblk = (n_ + kRows - 1) / kRows;
    const float* x = x_;
    const std::int64_t d = d_, n = n_;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
    for (std::int64_t blk = 0; blk < nblk; ++blk) {
      const std::int64_t tid = omp_get_thread_num();
      ArgMax* tb = tbest_.data() + tid * mg;
      std::int64_t* tc = tcount_.data() + tid * mg;
      const std::int64_t b = blk * kRows, e = std::min(n, b + kRows);
      if (xc) {
        read_[static_cast<std::size_t>(tid)] +=
            scan_groups(x, d, b, e, xc, g_new, scan_.data(), min_d_.data(), group_.data(),
                        dac2_.data(), tb, tc, rows_.data() + tid * kRows);
      } else {
        for (std::int64_t i = b; i < e; ++i) {
          const float m = min_d_[static_cast<std::size_t>(i)];
          const std::int32_t g = group_[static_cast<std::size_t>(i)];
          if (m < 0.0f || !scan_[static_cast<std::size_t>(g)]) continue;
          ++tc[g];
          if (kcenter_ops::beats(ArgMax{m, i}, tb[g])) tb[g] = ArgMax{m, i};
        }
      }
    }
    // Per-thread arg-maxes -> groups (the combination is order-independent: same result for
    // any thread count or schedule).
    auto combine = [&](std::int32_t g) {
      ArgMax b = argmax_none();
      std::int64_t count = 0;
      for (std::int64_t t = 0; t < nthreads_; ++t) {
        const std::size_t slot = static_cast<std::size_t>(t * mg + g);
        b = ArgMaxOp{}(b, tbest_[slot]);
        count += tcount_[slot];
      }
      best_[static_cast<std::size_t>(g)] = b;
      size_[static_cast<std::size_t>(g)] = count;
    };
    for (const std::int32_t g : scanned_) combine(g);
    if (g_new >= 0) combine(g_new);
  }

  const float* x_;
  std::int64_t n_, d_;
  std::vector<float>& min_d_;
  std::vector<std::int32_t> group_;       // group of each point (meaningless for centres)
  std::vector<unsigned char> scan_;       // per group: scanned in the current sweep
  std::vector<float> dac2_;               // per group: squared distance centre - c (-1: none)
  std::int64_t nthreads_;
  std::vector<ArgMax> tbest_;             // per thread x group arg-maxes of the current sweep
  std::vector<std::int64_t> tcount_;      // per thread x group member counts of the sweep
  std::vector<std::int64_t> size_;        // number of (non-centre) points in each group
  std::vector<std::int64_t> rows_;        // per thread: rows of a block to read
  std::vector<std::int64_t> read_;        // per thread: rows read in the current sweep
  std::int32_t centre_group_;             // the group id of centres: never scanned
  std::vector<std::int64_t> centre_;      // point index of each group's centre (-1: none)
  std::vector<ArgMax> best_;              // arg-max of min_d within each group
  std::vector<std::int32_t> scanned_;     // groups of the current sweep
};

double run_pruned(const float* x, std::int64_t n, std::int64_t d, const std::int64_t* labeled,
                  std::int64_t n_labeled, std::int64_t budget, std::int64_t* out,
                  std::vector<float>& min_d, const std::vector<std::int64_t>& nearest,
                  bool want_radius) {
  if (n_labeled + budget + 2 >= std::numeric_limits<std::int32_t>::max())
    return run_unpruned(x, n, d, n_labeled, budget, out, min_d, want_radius);
  // Groups: one per labeled point and pick, the initial one without labels, the centres' one.
  PrunedState st(x, n, d, n_labeled + budget + 2, min_d);
  ArgMax best;
  std::int64_t group = -1;
  if (n_labeled > 0) {
    st.init_groups(labeled, n_labeled, nearest);
    best = st.global_best(&group);
  } else {
    st.init_all();
    best = farthest_from_mean(x, n, d);
    group = -1;
  }
  // Where the triangle inequality keeps failing (e.g. isotropic data in high dimension) the
  // bookkeeping only costs: after kDenseStreak picks in a row that read nearly every row, the
  // remaining picks use the plain pass. min_d is the same in both, so are the picks.
  constexpr std::int64_t kMinPicks = 32, kDenseStreak = 16;
  std::int64_t streak = 0;
  bool dense = false;
  for (std::int64_t t = 0; t < budget; ++t) {
    const std::int64_t c = best.index;
    out[t] = c;
    if (t + 1 >= budget && !want_radius) break;
    if (dense) {
      min_d[static_cast<std::size_t>(c)] = kCenter;
      best = parallel_argmax(n, [&](std::int64_t b, std::int64_t e) {
        return scan_rows(x, d, b, e, c, min_d.data());
      });
      continue;
    }
    st.add_centre(c, group);
    best = st.global_best(&group);
    const std::int64_t candidates = n - n_labeled - (t + 1);
    streak = 10 * st.rows_read() >= 9 * candidates ? streak + 1 : 0;
    dense = t + 1 >= kMinPicks && streak >= kDenseStreak;
  }
  if (!want_radius) return -1.0;
  return best.index >= 0 ? std::sqrt(static_cast<double>(std::max(best.value, 0.0f))) : 0.0;
}

}  // namespace

double kcenter(const float* features, std::int64_t n, std::int64_t d, const std::int64_t* labeled,
               std::int64_t n_labeled, std::int64_t budget, std::int64_t* out,
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
  std::vector<std::int64_t> nearest;
  if (n_labeled > 0) {
    nearest.assign(static_cast<std::size_t>(n), 0);
    init_labeled(features, n, d, labeled, n_labeled, min_d.data(), nearest.data());
  }
  if (opts.prune)
    return run_pruned(features, n, d, labeled, n_labeled, budget, out, min_d, nearest,
                      opts.want_radius);
  return run_unpruned(features, n, d, n_labeled, budget, out, min_d, opts.want_radius);
}

}  // namespace dalcore::cpu
