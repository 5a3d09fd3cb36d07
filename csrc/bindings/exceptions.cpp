#include <exception>

#include "dalcore/status.h"
#include "registry.h"

namespace dalcore::bind {

void register_exceptions(py::module_& m) {
  (void)m;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const dalcore::TypeMismatch& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const dalcore::InvalidArgument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const dalcore::CudaError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
}

}  // namespace dalcore::bind
