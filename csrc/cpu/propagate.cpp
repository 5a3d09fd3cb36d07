#include "dalcore/propagate.h"

namespace dalcore::cpu {}
