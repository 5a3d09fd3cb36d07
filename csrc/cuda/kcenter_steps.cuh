// The tile bodies of the GPU path of kcenter (csrc/cuda/kcenter.cu): one tile (a warp on CUDA,
// emulated lane by lane in the twin; dalcore/detail/tile.h) per row or per few consecutive rows,
// the lanes reading a row's columns together (coalesced), distances summed in the tile order.
#pragma once

#include <cstdint>
#include <limits>

#include "dalcore/detail/hd.h"
#include "dalcore/detail/kcenter_bound.h"
#include "dalcore/detail/kcenter_ops.h"
#include "dalcore/detail/tile.h"

namespace dalcore::gpu::kcenter_steps {

using i64 = std::int64_t;
using kcenter_ops::ArgMax;
using kcenter_ops::kCenter;

// A pick's reduction value: the arg-max (ties to the lowest index) and the rows read in full.
struct Pick {
  ArgMax best;
  i64 full;
};
struct PickOp {
  DALCORE_HD Pick operator()(const Pick& a, const Pick& b) const {
    return Pick{kcenter_ops::ArgMaxOp{}(a.best, b.best), a.full + b.full};
  }
};
DALCORE_HD Pick pick_none() { return Pick{kcenter_ops::argmax_none(), 0}; }

// Tile t covers rows [t rpt, (t + 1) rpt) clipped to n (rpt fixed by n alone).
struct Rows {
  i64 n, rpt;
  DALCORE_HD i64 begin(i64 t) const { return t * rpt; }
  DALCORE_HD i64 end(i64 t) const { return (t + 1) * rpt < n ? (t + 1) * rpt : n; }
  i64 tiles() const { return (n + rpt - 1) / rpt; }
};

// The first pick with nothing labeled: (squared distance to the mean, i), no update.
struct MeanDist {
  const float* x;
  i64 d;
  Rows rows;
  const float* mean;
  template <class Tile>
  DALCORE_HD Pick operator()(const Tile& tl, i64 t) const {
    Pick p = pick_none();
    for (i64 i = rows.begin(t); i < rows.end(t); ++i)
      p = PickOp{}(p, Pick{ArgMax{tile::sq_dist(tl, x + i * d, mean, d), i}, 1});
    return p;
  }
};

// Labeled-distance initialisation, parallel over (point, chunk of labeled points): tile t is
// point i = t / n_chunks against labeled[c kChunk, (c + 1) kChunk), c = t mod n_chunks; the
// chunk's minimum goes into min_d[i] by an atomic minimum (exact: no order dependence).
struct LabeledInit {
  static constexpr i64 kChunk = 32;
  const float* x;
  i64 d;
  const i64* labeled;
  i64 n_labeled, n_chunks;
  float* min_d;
  template <class Tile>
  DALCORE_HD void operator()(const Tile& tl, i64 t) const {
    const i64 i = t / n_chunks, c = t - i * n_chunks;
    if (min_d[i] < 0.0f) return;  // a labeled point (marked by an earlier launch)
    const i64 j1 = (c + 1) * kChunk < n_labeled ? (c + 1) * kChunk : n_labeled;
    float m = std::numeric_limits<float>::infinity();
    for (i64 j = c * kChunk; j < j1; ++j) {
      const float s = tile::sq_dist(tl, x + i * d, x + labeled[j] * d, d);
      m = s < m ? s : m;
    }
    if (tl.leader()) tile::atomic_min_nonneg(min_d + i, m);
  }
};

// The projection of the pool: z_i = fl(P fl(x_i - mu)) (m floats), and its error radius eps_i
// from fl(|fl(x_i - mu)|^2) (kcenter_bound.h). One tile per row.
struct Project {
  const float* x;
  i64 d;
  const float* p;   // m x d
  const float* mu;  // d
  i64 m;
  float* z;    // n x m
  float* eps;  // n
  kcenter_bound::Scalars sc;
  template <class Tile>
  DALCORE_HD float centred_dot(const Tile& tl, const float* xi, const float* w) const {
    auto acc = Tile::fill(0.0f);
    for (i64 k0 = 0; k0 < d; k0 += Tile::kWidth)
      tl.for_lanes([&](int l) {
        if (k0 + l < d) {
          const float c = tile::sub_rn(xi[k0 + l], mu[k0 + l]);
          acc[l] = tile::add_rn(acc[l], tile::mul_rn(c, w != nullptr ? w[k0 + l] : c));
        }
      });
    return tl.fold(acc, tile::AddRn{});
  }
  template <class Tile>
  DALCORE_HD void operator()(const Tile& tl, i64 i) const {
    const float* xi = x + i * d;
    const float c2 = centred_dot(tl, xi, nullptr);
    for (i64 j = 0; j < m; ++j) {
      const float zj = centred_dot(tl, xi, p + j * d);
      if (tl.leader()) z[i * m + j] = zj;
    }
    if (tl.leader()) eps[i] = kcenter_bound::eps_of(c2, sc);
  }
};

// The projected copy the picks read (Projected = true).
struct ProjectedCopy {
  const float* z = nullptr;
  const float* eps = nullptr;
  i64 m = 0;
  kcenter_bound::Scalars sc;
};

// One pick, fused: read the previous pick c from device memory (none when prev is null), add
// it as a centre (its own min-distance becomes kCenter; every other point's min-distance
// min(mi, |x_i - x_c|^2)), and yield the arg-max of the updated min-distances. Projected: the
// full row is read only where the projection's lower bound cannot exclude an update.
template <bool Projected>
struct PickStep {
  const float* x;
  i64 d;
  Rows rows;
  float* min_d;
  const Pick* prev;
  ProjectedCopy pc;
  template <class Tile>
  DALCORE_HD bool may_improve(const Tile& tl, i64 i, i64 c, float mi) const {
    if constexpr (Projected) {
      const float q = tile::sq_dist(tl, pc.z + i * pc.m, pc.z + c * pc.m, pc.m);
      return !kcenter_bound::skip(q, mi, pc.eps[i], pc.eps[c], pc.sc);
    } else {
      (void)tl, (void)i, (void)c, (void)mi;
      return true;
    }
  }
  template <class Tile>
  DALCORE_HD Pick operator()(const Tile& tl, i64 t) const {
    const i64 c = prev != nullptr ? prev->best.index : -1;
    Pick p = pick_none();
    for (i64 i = rows.begin(t); i < rows.end(t); ++i) {
      float mi = min_d[i];
      tl.sync();  // every lane has read min_d[i] before the leader writes it
      if (mi < 0.0f) continue;
      if (i == c) {
        if (tl.leader()) min_d[i] = kCenter;
        continue;
      }
      if (c >= 0 && may_improve(tl, i, c, mi)) {
        ++p.full;
        const float s = tile::sq_dist(tl, x + i * d, x + c * d, d);
        if (s < mi) {
          mi = s;
          if (tl.leader()) min_d[i] = s;
        }
      }
      p.best = kcenter_ops::ArgMaxOp{}(p.best, ArgMax{mi, i});
    }
    return p;
  }
};

struct PickIndex {
  DALCORE_HD i64 operator()(const Pick& a) const { return a.best.index; }
};
struct FullRows {
  DALCORE_HD i64 operator()(const Pick& a) const { return a.full; }
};

// As the CPU kernel: sqrt in double of the largest squared min-distance.
struct RadiusOf {
  const Pick* last;
  double* radius;
  DALCORE_HD void operator()(i64) const {
    const double v = static_cast<double>(last->best.value);
    radius[0] = v > 0.0 ? ::sqrt(v) : 0.0;
  }
};

}  // namespace dalcore::gpu::kcenter_steps
