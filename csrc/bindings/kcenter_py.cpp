#include "dalcore/kcenter.h"
#include "registry.h"

namespace dalcore::bind {

void register_kcenter(py::module_& m) { (void)m; }

}  // namespace dalcore::bind
