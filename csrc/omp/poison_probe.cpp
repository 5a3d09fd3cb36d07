// Test-only (_core_omp): shows that the twin's fresh buffers are poisoned, so that a kernel
// reading an element it never wrote gets NaN (or -1), not a convenient zero.
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/reduce.h>

#include <cstdint>

#include "../bindings/registry.h"
#include "dalcore/detail/backend.h"
#include "dalcore/status.h"

namespace dalcore::bind {
namespace {

struct WriteAllBut {
  float* x;
  std::int64_t skip;
  void operator()(std::int64_t i) const {
    if (i != skip) x[i] = 1.0f;
  }
};

// A fresh buffer of n floats, every element written but `skip` (-1: none), then summed; and the
// first element of a fresh int64 buffer.
py::tuple poison_probe(std::int64_t n, std::int64_t skip) {
  require(n >= 1, "n: expected >= 1, got ", n);
  backend::buffer<float> x(static_cast<std::size_t>(n), nullptr);
  const auto pol = backend::policy(nullptr);
  thrust::for_each(pol, thrust::counting_iterator<std::int64_t>(0),
                   thrust::counting_iterator<std::int64_t>(n), WriteAllBut{x.data(), skip});
  const float sum = thrust::reduce(pol, x.data(), x.data() + n, 0.0f);
  backend::buffer<std::int64_t> ints(1, nullptr);
  return py::make_tuple(sum, ints.data()[0]);
}

}  // namespace

void register_poison_probe(py::module_& gpu) {
  gpu.def("_poison_probe", &poison_probe, py::arg("n"), py::arg("skip"),
          "Test only: sum of a fresh float buffer with every element but `skip` written, and "
          "the first element of a fresh int64 buffer.");
}

}  // namespace dalcore::bind
