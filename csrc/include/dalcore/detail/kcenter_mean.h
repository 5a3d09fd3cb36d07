// The mean of the rows on the GPU path of kcenter (its first pick with nothing labeled is the
// point farthest from it), in a fixed order: column sums in double over fixed blocks of
// kMeanBlock rows, then the blocks in order, / n, rounded to float. The same bits on CUDA and
// in the twin, whatever the number of threads. Shared by kcenter.cu and kcenter_reference.cu.
#pragma once

#include <cstdint>

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include "dalcore/detail/backend.h"
#include "dalcore/detail/kcenter_ops.h"

namespace dalcore::kcenter_mean {

using kcenter_ops::kMeanBlock;

// Column sums over fixed blocks of rows, in double: partial[b * d + k] (item = b * d + k, so
// neighbouring items read neighbouring columns).
struct BlockColumnSum {
  const float* x;
  std::int64_t n, d;
  double* partial;
  DALCORE_HD void operator()(std::int64_t item) const {
    const std::int64_t b = item / d, k = item % d;
    const std::int64_t end = (b + 1) * kMeanBlock < n ? (b + 1) * kMeanBlock : n;
    double s = 0.0;
    for (std::int64_t i = b * kMeanBlock; i < end; ++i) s += x[i * d + k];
    partial[item] = s;
  }
};

// mean[k] = sum over blocks (in block order) / n, as float.
struct FinishMean {
  const double* partial;
  std::int64_t n, d, nb;
  float* mean;
  DALCORE_HD void operator()(std::int64_t k) const {
    double s = 0.0;
    for (std::int64_t b = 0; b < nb; ++b) s += partial[b * d + k];
    mean[k] = static_cast<float>(s / static_cast<double>(n));
  }
};

// mean (d floats, device) of the n x d rows x, stream-ordered (two launches, no sync).
inline void column_mean(const float* x, std::int64_t n, std::int64_t d, float* mean,
                        backend::stream_t s) {
  const auto pol = backend::policy(s);
  const thrust::counting_iterator<std::int64_t> first(0);
  const std::int64_t nb = (n + kMeanBlock - 1) / kMeanBlock;
  backend::buffer<double> partial(static_cast<std::size_t>(nb * d), s);
  thrust::for_each(pol, first, first + nb * d, BlockColumnSum{x, n, d, partial.data()});
  backend::check_launch("kcenter: column sums");
  thrust::for_each(pol, first, first + d, FinishMean{partial.data(), n, d, nb, mean});
  backend::check_launch("kcenter: mean");
}

}  // namespace dalcore::kcenter_mean
