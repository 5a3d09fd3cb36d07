// Checks of the arrays handed to the GPU-path kernels: see device_array.h.
#include "device_array.h"

#include <string>

#if defined(DALCORE_OMP_TWIN)
#include "dalcore/detail/backend.h"
#endif
#include "dalcore/info.h"
#include "dalcore/status.h"

namespace dalcore::bind {
namespace {

#if defined(DALCORE_OMP_TWIN)
constexpr const char* kInterface = "__array_interface__";
constexpr const char* kKind = "a host array (numpy, for the OpenMP twin)";
#else
constexpr const char* kInterface = "__cuda_array_interface__";
constexpr const char* kKind = "a CUDA array (e.g. a CUDA torch tensor)";
#endif

struct DtypeInfo {
  const char* typestr;
  std::int64_t itemsize;
  const char* label;
};

DtypeInfo info(Dtype dt) {
  switch (dt) {
    case Dtype::f32: return {"<f4", 4, "float32"};
    case Dtype::f64: return {"<f8", 8, "float64"};
    case Dtype::i32: return {"<i4", 4, "int32"};
    case Dtype::i64: return {"<i8", 8, "int64"};
    default: return {"|u1", 1, "uint8"};
  }
}

py::dict interface_of(const py::handle& obj, const char* name) {
  if (obj.is_none() || !py::hasattr(obj, kInterface))
    throw TypeMismatch(detail::concat(name, ": expected ", kKind, " exposing ", kInterface,
                                      ", got ", std::string(py::str(py::type::of(obj).attr("__name__")))));
  py::object d = obj.attr(kInterface);
  if (!py::isinstance<py::dict>(d))
    throw TypeMismatch(detail::concat(name, ": ", kInterface, " is not a dict"));
  return d.cast<py::dict>();
}

std::vector<std::int64_t> shape_of(const py::dict& d, const char* name) {
  std::vector<std::int64_t> shape;
  for (const auto& s : d["shape"].cast<py::tuple>()) shape.push_back(s.cast<std::int64_t>());
  for (const std::int64_t s : shape) require(s >= 0, name, ": negative dimension ", s);
  return shape;
}

void check_contiguous(const py::dict& d, const std::vector<std::int64_t>& shape,
                      std::int64_t itemsize, const char* name) {
  if (!d.contains("strides") || d["strides"].is_none()) return;
  const auto strides = d["strides"].cast<py::tuple>();
  require(strides.size() == shape.size(), name, ": strides and shape differ in length");
  std::int64_t expect = itemsize;
  for (std::size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1)
      require(strides[i].cast<std::int64_t>() == expect, name,
              ": expected a C-contiguous array (call .contiguous() first)");
    expect *= shape[i];
  }
}

void check_stream(const py::dict& d, std::uintptr_t stream, const char* name) {
  if (!d.contains("stream") || d["stream"].is_none()) return;
  const auto s = d["stream"].cast<std::uintptr_t>();
  // 1 is the legacy default stream, which a 0 handle also names.
  const bool same = s == stream || (s == 1 && stream == 0) || (s == 0 && stream == 1);
  require(same, name, ": the array is ordered on stream ", s, ", the call on stream ", stream);
}

int device_of(void* ptr, const char* name) {
#if defined(DALCORE_OMP_TWIN)
  (void)ptr;
  (void)name;
  return -1;
#else
  const int dev = gpu::pointer_device(ptr);
  require(dev >= 0, name,
          ": the pointer is not CUDA device memory (host, managed or unknown memory)");
  return dev;
#endif
}

}  // namespace

std::int64_t ArrayRef::size() const {
  std::int64_t n = 1;
  for (const std::int64_t s : shape) n *= s;
  return n;
}

ArrayRef array_ref(const py::handle& obj, const char* name, Dtype dt,
                   std::initializer_list<std::int64_t> dims, bool writable,
                   std::uintptr_t stream) {
  const py::dict d = interface_of(obj, name);
  const DtypeInfo want = info(dt);
  const std::string typestr = d["typestr"].cast<std::string>();
  if (typestr != want.typestr)
    throw TypeMismatch(detail::concat(name, ": expected ", want.label, " (", want.typestr,
                                      "), got ", typestr));
  ArrayRef a;
  a.shape = shape_of(d, name);
  require(a.shape.size() == dims.size(), name, ": expected ", dims.size(),
          " dimension(s), got ", a.shape.size());
  std::size_t i = 0;
  for (const std::int64_t want_dim : dims) {
    require(want_dim < 0 || a.shape[i] == want_dim, name, ": expected dimension ", i, " = ",
            want_dim, ", got ", a.shape[i]);
    ++i;
  }
  check_contiguous(d, a.shape, want.itemsize, name);
  require(!d.contains("mask") || d["mask"].is_none(), name, ": masked arrays are not supported");
  const auto data = d["data"].cast<py::tuple>();
  const auto ptr = data[0].cast<std::uintptr_t>();
  const bool readonly = data[1].cast<bool>();
  require(!(writable && readonly), name, ": expected a writable array");
  check_stream(d, stream, name);
  if (a.size() == 0) return a;
  require(ptr != 0, name, ": null data pointer for a non-empty array");
  require(ptr % static_cast<std::uintptr_t>(want.itemsize) == 0, name,
          ": data pointer not aligned to its element size");
  a.data = reinterpret_cast<void*>(ptr);
  a.device = device_of(a.data, name);
#if defined(DALCORE_OMP_TWIN)
  // Outputs start poisoned (NaN, 0xFF bytes), as fresh device memory would be undefined: an
  // entry the kernel forgets to write fails the tests.
  if (writable) {
    if (dt == Dtype::f32)
      backend::poison(a.as<float>(), static_cast<std::size_t>(a.size()));
    else if (dt == Dtype::f64)
      backend::poison(a.as<double>(), static_cast<std::size_t>(a.size()));
    else
      backend::poison(a.data, static_cast<std::size_t>(a.size() * want.itemsize));
  }
#endif
  return a;
}

ArrayRef optional_array_ref(const py::handle& obj, const char* name, Dtype dt,
                            std::initializer_list<std::int64_t> dims, bool writable,
                            std::uintptr_t stream) {
  if (obj.is_none()) return ArrayRef{};
  return array_ref(obj, name, dt, dims, writable, stream);
}

DeviceGuard::DeviceGuard(std::initializer_list<const ArrayRef*> arrays) {
  int dev = -1;
  for (const ArrayRef* a : arrays) {
    if (a->device < 0) continue;
    require(dev < 0 || a->device == dev, "arrays: expected every array on one device, got "
            "devices ", dev, " and ", a->device);
    dev = a->device;
  }
#if !defined(DALCORE_OMP_TWIN)
  if (dev >= 0) {
    previous_ = gpu::current_device();
    if (previous_ != dev) gpu::set_device(dev);
  }
#endif
}

DeviceGuard::~DeviceGuard() {
#if !defined(DALCORE_OMP_TWIN)
  if (previous_ >= 0) gpu::restore_device(previous_);
#endif
}

}  // namespace dalcore::bind
