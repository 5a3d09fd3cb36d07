#include "dalcore/graph.h"
#include "registry.h"

namespace dalcore::bind {

void register_gpu_graph(py::module_& gpu) { (void)gpu; }

}  // namespace dalcore::bind
