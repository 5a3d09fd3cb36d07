// The rows a full pass through the projection bound examines beyond its block test (a test of
// 16 rows at once: the int8 copy's, kcenter_coarse.cpp, or the float32 copy's,
// kcenter_projection.cpp): first the float32 projection test of one row (skip()), then, for the
// rows it cannot clear, the exact squared distance of the full rows. The rows are listed and
// prefetched as they are found, and examined once a list is full or the pass is done (the
// prefetches have landed by then: the rows lie anywhere, the hardware prefetcher cannot follow).
// Every method is always inlined: the callers are multiversioned row loops, and the distances
// must be compiled for their ISA.
#pragma once

#include <cstdint>

#include "dalcore/detail/kcenter_ops.h"
#include "dalcore/detail/kcenter_projection.h"

namespace dalcore::cpu::projection {

// OnUpdate: called as on_update(i) after min_d[i] got lower (a full row read found c closer).
template <class OnUpdate>
class RowLists {
 public:
  [[gnu::always_inline]] RowLists(const float* x, std::int64_t d, const ProjectionBound& pb,
                                  std::int64_t c, float* min_d, OnUpdate on_update)
      : x_(x), d_(d), pb_(pb), xc_(x + c * d), zc_(pb.z.data() + c * pb.stride),
        ec_(pb.eps[static_cast<std::size_t>(c)]), min_d_(min_d), on_update_(on_update) {}

  // Row i needs its float32 projection test.
  [[gnu::always_inline]] void add_fine(std::int64_t i) {
    prefetch(pb_.z.data() + i * pb_.stride, pb_.stride * 4);
    __builtin_prefetch(pb_.eps.data() + i);
    fine_[nf_++] = i;
    if (nf_ == kList) drain_fine();
  }

  // Row i has to be read in full.
  [[gnu::always_inline]] void add_row(std::int64_t i) {
    prefetch(x_ + i * d_, d_ * 4);
    rows_[nr_++] = i;
    if (nr_ == kList) drain_rows();
  }

  // Examines what is still listed.
  [[gnu::always_inline]] void finish() {
    drain_fine();
    drain_rows();
  }

  std::int64_t full() const { return n_full_; }
  std::int64_t fine() const { return n_fine_; }

 private:
  static constexpr int kList = 1 << 11;

  [[gnu::always_inline]] static void prefetch(const void* p, std::int64_t bytes) {
    const char* b = static_cast<const char*>(p);
    for (std::int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(b + off);
  }

  [[gnu::always_inline]] void drain_rows() {
    for (int k = 0; k < nr_; ++k) {
      const std::int64_t i = rows_[k];
      const float s = kcenter_ops::sq_dist(x_ + i * d_, xc_, d_);
      if (s < min_d_[i]) {
        min_d_[i] = s;
        on_update_(i);
      }
    }
    n_full_ += nr_;
    nr_ = 0;
  }

  [[gnu::always_inline]] void drain_fine() {
    const std::int64_t stride = pb_.stride;
    for (int k = 0; k < nf_; ++k) {
      const std::int64_t i = fine_[k];
      const float q = kcenter_ops::sq_dist(pb_.z.data() + i * stride, zc_, stride);
      if (!skip(q, min_d_[i], pb_.eps[static_cast<std::size_t>(i)], ec_, pb_.factor,
                pb_.abs_slack, pb_.abs_q))
        add_row(i);
    }
    n_fine_ += nf_;
    nf_ = 0;
  }

  const float* x_;
  std::int64_t d_;
  const ProjectionBound& pb_;
  const float* xc_;
  const float* zc_;
  float ec_;
  float* min_d_;
  OnUpdate on_update_;
  std::int64_t rows_[kList], fine_[kList];
  int nr_ = 0, nf_ = 0;
  std::int64_t n_full_ = 0, n_fine_ = 0;
};

}  // namespace dalcore::cpu::projection
