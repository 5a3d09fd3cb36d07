// Each op binds itself in its own file; module.cpp / module_omp.cpp only call these.
#pragma once

#include <pybind11/pybind11.h>

namespace dalcore::bind {
namespace py = pybind11;

void register_info(py::module_& m);
void register_kcenter(py::module_& m);
void register_graph(py::module_& m);
void register_propagate(py::module_& m);

// The Thrust ("GPU path") kernels, bound into the submodule `gpu`: raw pointers (device pointers
// under CUDA, host pointers under the OpenMP twin) and a stream handle, validated in Python.
void register_gpu_kcenter(py::module_& gpu);
void register_gpu_graph(py::module_& gpu);
void register_gpu_propagate(py::module_& gpu);

// Translates dalcore::InvalidArgument -> ValueError, TypeMismatch -> TypeError,
// CudaError -> RuntimeError.
void register_exceptions(py::module_& m);
}  // namespace dalcore::bind
