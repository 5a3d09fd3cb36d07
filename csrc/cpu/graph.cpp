#include "dalcore/graph.h"

namespace dalcore::cpu {}
