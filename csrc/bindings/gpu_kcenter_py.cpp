#include "dalcore/kcenter.h"
#include "registry.h"

namespace dalcore::bind {

void register_gpu_kcenter(py::module_& gpu) { (void)gpu; }

}  // namespace dalcore::bind
