#include <omp.h>

#include "dalcore/info.h"
#include "registry.h"

#ifndef DALCORE_VERSION
#define DALCORE_VERSION "0+unknown"
#endif

namespace dalcore::bind {

void register_info(py::module_& m) {
  m.attr("__version__") = DALCORE_VERSION;
#ifdef DALCORE_WITH_CUDA
  m.attr("cuda_built") = true;
#else
  m.attr("cuda_built") = false;
#endif
  m.def("cuda_device_count", []() {
#ifdef DALCORE_WITH_CUDA
    return gpu::device_count();
#else
    return 0;
#endif
  }, "CUDA devices visible to this build's runtime (0 in a build without CUDA).");
  m.def("build_info", []() {
    py::dict d;
    d["version"] = DALCORE_VERSION;
#if defined(__clang__)
    d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    d["compiler"] = std::string("gcc ") + __VERSION__;
#else
    d["compiler"] = "unknown";
#endif
    d["simd"] = cpu_simd_level();
    d["threads"] = cpu_threads();
#ifdef DALCORE_WITH_CUDA
    d["cuda_built"] = true;
    d["cuda_devices"] = gpu::device_count();
#else
    d["cuda_built"] = false;
    d["cuda_devices"] = 0;
#endif
    return d;
  }, "Version, compiler, SIMD level, threads, CUDA built, CUDA devices.");
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("num_threads must be >= 1, got " + std::to_string(n));
    omp_set_num_threads(n);
  }, py::arg("num_threads"), "Set the number of OpenMP threads the CPU kernels use.");
}

}  // namespace dalcore::bind
