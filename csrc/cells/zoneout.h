// Zoneout (Krueger et al. 2016), shared by every cell: the state a unit carries is its new
// value where it is not zoned out and its previous one where it is, `keep` being 1 or 0 per
// unit in training and the keep probability in evaluation (the expected value). Backward,
// the state's gradient goes (1 - keep) to the new value and keep straight to the previous
// state.
#pragma once

#include "common.h"

namespace fastrnn {
namespace cells {
inline namespace FASTRNN_CPU_LEVEL {  // see common.h

template <class V>
FASTRNN_HD V zoneout(V keep, V previous, V candidate) {
  return candidate + keep * (previous - candidate);
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cells
}  // namespace fastrnn
