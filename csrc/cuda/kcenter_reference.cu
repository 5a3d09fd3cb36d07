// The reference form of the GPU path of kcenter (gpu::kcenter_reference): the first version,
// written on Thrust algorithms only over DALCORE_HD functors, one thread per row, kept as the
// reference the tiled kernels of kcenter.cu are tested against (GPU-path tests, tools/gpu_check.sh).
// Compiled by nvcc into _core and by the host compiler into _core_omp.
//
// Everything stays on the device and in stream order: one reduction per pick over a
// transform_iterator whose functor reads the previous pick from device memory, adds it as a
// centre (min-distance update in place) and yields (min-distance, index); the arg-max (lowest
// index on ties) lands in device memory, where the next pick's functor reads it.
//
// Host synchronisations per call (CUDA): none (none per pick); the caller synchronises when it
// reads the picks or the radius. Temporaries: backend::buffer (cudaMallocAsync on the caller's
// stream) and CUB's reduction scratch, grown once and reused by every pick. (The Python border,
// dalcore/_kcenter.py, synchronises once before the call to validate the features and find
// their scale.)
#include <cmath>
#include <cstdint>
#include <limits>

#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/transform.h>

#include "dalcore/detail/backend.h"
#include "dalcore/detail/kcenter_mean.h"
#include "dalcore/detail/kcenter_ops.h"
#include "dalcore/kcenter.h"

namespace dalcore::gpu {
namespace {
namespace ref {

using kcenter_ops::ArgMax;
using kcenter_ops::ArgMaxOp;
using kcenter_ops::kCenter;

template <bool Vec4>
DALCORE_HD float row_dist(const float* a, const float* b, std::int64_t d) {
  if constexpr (Vec4) {
    return kcenter_ops::sq_dist4(a, b, d);
  } else {
    return kcenter_ops::sq_dist(a, b, d);
  }
}

// Marks the labeled points as centres.
struct MarkCentre {
  float* min_d;
  const std::int64_t* labeled;
  DALCORE_HD void operator()(std::int64_t j) const { min_d[labeled[j]] = kCenter; }
};

// Min squared distance of each non-centre point to the labeled points.
template <bool Vec4>
struct LabeledDist {
  const float* x;
  std::int64_t d;
  const std::int64_t* labeled;
  std::int64_t n_labeled;
  float* min_d;
  DALCORE_HD void operator()(std::int64_t i) const {
    float m = min_d[i];
    if (m < 0.0f) return;
    const float* xi = x + i * d;
    for (std::int64_t j = 0; j < n_labeled; ++j) {
      const float s = row_dist<Vec4>(xi, x + labeled[j] * d, d);
      m = s < m ? s : m;
    }
    min_d[i] = m;
  }
};

// (squared distance of point i to the vector q, i).
template <bool Vec4>
struct DistToVector {
  const float* x;
  std::int64_t d;
  const float* q;
  DALCORE_HD ArgMax operator()(std::int64_t i) const {
    return ArgMax{row_dist<Vec4>(x + i * d, q, d), i};
  }
};

// One pick's fused step for point i: add the previous pick (read from device memory; none when
// prev is null) as a centre, update min_d[i] in place, yield (min_d[i], i). Centres yield kCenter,
// below every candidate.
template <bool Vec4>
struct PickStep {
  const float* x;
  std::int64_t d;
  float* min_d;
  const ArgMax* prev;
  DALCORE_HD ArgMax operator()(std::int64_t i) const {
    float m = min_d[i];
    if (m < 0.0f) return ArgMax{kCenter, i};
    if (prev != nullptr) {
      const std::int64_t c = prev->index;
      if (i == c) {
        min_d[i] = kCenter;
        return ArgMax{kCenter, i};
      }
      const float s = row_dist<Vec4>(x + i * d, x + c * d, d);
      if (s < m) {
        m = s;
        min_d[i] = s;
      }
    }
    return ArgMax{m, i};
  }
};

struct PickIndex {
  DALCORE_HD std::int64_t operator()(const ArgMax& a) const { return a.index; }
};

struct RadiusOf {  // as the CPU kernel: sqrt in double of the largest squared min-distance
  const ArgMax* last;
  double* radius;
  DALCORE_HD void operator()(std::int64_t) const {
    const double v = static_cast<double>(last->value);
    radius[0] = v > 0.0 ? ::sqrt(v) : 0.0;
  }
};

template <bool Vec4>
void run(const float* x, std::int64_t n, std::int64_t d, const std::int64_t* labeled,
         std::int64_t n_labeled, std::int64_t budget, std::int64_t* out, double* radius,
         backend::stream_t s) {
  const auto pol = backend::policy(s);
  const thrust::counting_iterator<std::int64_t> first(0);
  backend::buffer<float> min_d(static_cast<std::size_t>(n), s);
  // picks[t]: (value, index) of pick t; picks[budget]: the final arg-max (covering radius).
  backend::buffer<ArgMax> picks(static_cast<std::size_t>(budget + 1), s);
  backend::buffer<unsigned char> scratch;

  thrust::fill(pol, min_d.data(), min_d.data() + n, std::numeric_limits<float>::infinity());
  backend::check_launch("kcenter: fill");

  const ArgMax none = kcenter_ops::argmax_none();
  if (n_labeled > 0) {
    thrust::for_each(pol, first, first + n_labeled, MarkCentre{min_d.data(), labeled});
    backend::check_launch("kcenter: mark labeled");
    thrust::for_each(pol, first, first + n,
                     LabeledDist<Vec4>{x, d, labeled, n_labeled, min_d.data()});
    backend::check_launch("kcenter: labeled distances");
    auto it = thrust::make_transform_iterator(first, PickStep<Vec4>{x, d, min_d.data(), nullptr});
    backend::reduce_into(s, scratch, it, n, picks.data(), ArgMaxOp{}, none);
  } else {
    backend::buffer<float> mean(static_cast<std::size_t>(d), s);
    kcenter_mean::column_mean(x, n, d, mean.data(), s);
    auto it = thrust::make_transform_iterator(first, DistToVector<Vec4>{x, d, mean.data()});
    backend::reduce_into(s, scratch, it, n, picks.data(), ArgMaxOp{}, none);
  }
  const std::int64_t passes = radius != nullptr ? budget : budget - 1;
  for (std::int64_t t = 0; t < passes; ++t) {
    auto it = thrust::make_transform_iterator(
        first, PickStep<Vec4>{x, d, min_d.data(), picks.data() + t});
    backend::reduce_into(s, scratch, it, n, picks.data() + t + 1, ArgMaxOp{}, none);
  }
  thrust::transform(pol, picks.data(), picks.data() + budget, out, PickIndex{});
  backend::check_launch("kcenter: indices");
  if (radius != nullptr) {
    thrust::for_each(pol, first, first + 1, RadiusOf{picks.data() + budget, radius});
    backend::check_launch("kcenter: radius");
  }
}

}  // namespace ref
}  // namespace

void kcenter_reference(const float* features, std::int64_t n, std::int64_t d,
                       const std::int64_t* labeled, std::int64_t n_labeled, std::int64_t budget,
                       std::int64_t* out, double* radius, std::uintptr_t stream) {
  check_kcenter_sizes(n, d, n_labeled, budget);
  const backend::stream_t s = backend::to_stream(stream);
  // Vector loads when every row starts on a 16-byte boundary.
  const bool vec4 = d % 4 == 0 && reinterpret_cast<std::uintptr_t>(features) % 16 == 0;
  if (vec4)
    ref::run<true>(features, n, d, labeled, n_labeled, budget, out, radius, s);
  else
    ref::run<false>(features, n, d, labeled, n_labeled, budget, out, radius, s);
}

}  // namespace dalcore::gpu
