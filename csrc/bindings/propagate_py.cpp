#include "dalcore/propagate.h"
#include "registry.h"

namespace dalcore::bind {

void register_propagate(py::module_& m) { (void)m; }

}  // namespace dalcore::bind
