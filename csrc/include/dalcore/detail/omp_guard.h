// No exception may leave an OpenMP region (it would call std::terminate). Work inside a region
// that can throw (an allocation, a validation) runs through OmpGuard::run: the first exception
// is kept, later work is skipped, and rethrow() raises it after the region on the calling
// thread (the bindings turn std::bad_alloc into MemoryError, InvalidArgument into ValueError).
// Every thread still reaches every barrier and worksharing construct: run() only wraps bodies.
#pragma once

#include <atomic>
#include <exception>
#include <mutex>
#include <utility>

namespace dalcore::detail {

class OmpGuard {
 public:
  template <class F>
  void run(F&& f) noexcept {
    if (failed()) return;
    try {
      std::forward<F>(f)();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!first_) first_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
  // After the region: rethrows the first exception, if any.
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr first_;
};

}  // namespace dalcore::detail
