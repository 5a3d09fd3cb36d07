#include "dalcore/propagate.h"
#include "registry.h"

namespace dalcore::bind {

void register_gpu_propagate(py::module_& gpu) { (void)gpu; }

}  // namespace dalcore::bind
