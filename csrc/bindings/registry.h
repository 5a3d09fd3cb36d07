// Each op binds itself in its own file; module.cpp / module_omp.cpp only call these.
#pragma once

#include <pybind11/pybind11.h>

namespace dalcore::bind {
namespace py = pybind11;

void register_info(py::module_& m);
void register_kcenter(py::module_& m);
void register_graph(py::module_& m);
void register_propagate(py::module_& m);

// The Thrust ("GPU path") kernels, bound into the submodule `gpu`: arrays checked in C++
// (device_array.h: __cuda_array_interface__ under CUDA, __array_interface__ in the OpenMP twin)
// and a stream handle.
void register_gpu_kcenter(py::module_& gpu);
void register_gpu_graph(py::module_& gpu);
void register_gpu_propagate(py::module_& gpu);

// Translates dalcore::InvalidArgument -> ValueError, TypeMismatch -> TypeError,
// CudaError -> RuntimeError.
void register_exceptions(py::module_& m);
}  // namespace dalcore::bind
