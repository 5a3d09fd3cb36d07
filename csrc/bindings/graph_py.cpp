#include "dalcore/graph.h"
#include "registry.h"

namespace dalcore::bind {

void register_graph(py::module_& m) { (void)m; }

}  // namespace dalcore::bind
