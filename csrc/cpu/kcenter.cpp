#include "dalcore/kcenter.h"

namespace dalcore::cpu {}
