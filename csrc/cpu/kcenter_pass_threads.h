// Whether a full pass of greedy k-center (one per pick: every row against the new centre) runs
// on one thread or on all of them, chosen from the wall times of the passes themselves.
//
// On a quiet machine a pass over 50,000 x 128 floats takes about 1.6 ms on one core and a
// fork/join costs microseconds: all threads win. On a machine shared with other busy processes
// the join waits for a descheduled thread, often a whole time slice: measured on this project's
// 2-core machine at load 4-5, isotropic 50,000 x 128, 1000 picks: 2.0 s on one thread, 6-8 s on
// two. No static size threshold is right for both, so the passes measure: the first passes
// alternate between the two modes, then the mode with the lower median of its last kKeep passes
// runs, and every kProbe passes each mode is tried again (the load changes). The mode only
// decides who computes the chunks: their arg-maxes are combined in chunk order either way, so
// the picks do not depend on it.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>

namespace dalcore::cpu {

class PassThreads {
 public:
  explicit PassThreads(int threads) : single_(threads <= 1) {}

  // True: run the next pass on one thread.
  bool serial() const {
    if (single_) return true;
    const std::int64_t phase = count_ % kProbe;
    if (phase < 2 * kKeep) return phase % 2 == 0;  // probing: alternate the modes
    return median(0) <= median(1);
  }

  // Starts timing the pass about to run (in the mode serial() gives now).
  void start() {
    mode_ = serial() ? 0 : 1;
    t0_ = Clock::now();
  }

  // Records the pass started by start().
  void stop() {
    const double s = std::chrono::duration<double>(Clock::now() - t0_).count();
    auto& ring = times_[static_cast<std::size_t>(mode_)];
    ring[static_cast<std::size_t>(filled_[mode_] % kKeep)] = s;
    ++filled_[mode_];
    ++count_;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::int64_t kKeep = 4;     // passes per mode the choice looks at
  static constexpr std::int64_t kProbe = 128;  // passes between two probes of both modes

  double median(int mode) const {
    const std::int64_t k = std::min(filled_[mode], kKeep);
    if (k == 0) return 0.0;  // never tried: try it
    std::array<double, kKeep> v = times_[static_cast<std::size_t>(mode)];
    std::sort(v.begin(), v.begin() + k);
    const auto h = static_cast<std::size_t>(k / 2);
    return k % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
  }

  bool single_;
  std::int64_t count_ = 0;
  int mode_ = 0;
  std::array<std::int64_t, 2> filled_{0, 0};
  std::array<std::array<double, kKeep>, 2> times_{};
  Clock::time_point t0_{};
};

}  // namespace dalcore::cpu
