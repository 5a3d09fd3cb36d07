// Arrays handed to the GPU-path kernels, checked in C++ (never bare integer pointers).
//
// _core (CUDA): objects exposing __cuda_array_interface__ (a CUDA torch tensor, CuPy, Numba),
//   whose pointer must be device memory (cudaPointerGetAttributes: not host, not managed).
// _core_omp (the OpenMP twin): objects exposing __array_interface__ (numpy), host memory.
// Checked: the element type, the rank and every dimension asked for, C-contiguity, writability
// of outputs, one device for all the arrays of a call, and the interface's stream (when it names
// one) against the call's stream. Errors: TypeError for a wrong kind or dtype, ValueError for
// shapes, strides, devices and streams, each naming the argument.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace dalcore::bind {
namespace py = pybind11;

enum class Dtype { f32, f64, i32, i64, u8 };

struct ArrayRef {
  void* data = nullptr;              // nullptr for an empty array
  std::vector<std::int64_t> shape;
  int device = -1;                   // CUDA device; -1 for host memory or an empty array
  std::int64_t dim(std::size_t i) const { return shape[i]; }
  std::int64_t size() const;
  template <class T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

// `obj` checked as an array of `dt` with dims.size() dimensions, each equal to dims[i] unless
// dims[i] < 0 (any). `writable`: the kernel writes it.
ArrayRef array_ref(const py::handle& obj, const char* name, Dtype dt,
                   std::initializer_list<std::int64_t> dims, bool writable,
                   std::uintptr_t stream);

// None -> an empty ArrayRef (data nullptr), else array_ref.
ArrayRef optional_array_ref(const py::handle& obj, const char* name, Dtype dt,
                            std::initializer_list<std::int64_t> dims, bool writable,
                            std::uintptr_t stream);

// Checks that the arrays share one device and makes it current for the scope (restored after),
// so that the kernels' scratch and launches go to the arrays' device. No-op in the twin.
class DeviceGuard {
 public:
  DeviceGuard(std::initializer_list<const ArrayRef*> arrays);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace dalcore::bind
