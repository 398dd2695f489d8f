// The CPU kernels (kernels.h) for any processor: ATen's default Vectorized (plain loops the
// compiler vectorises for the baseline instruction set). Every build has this level.
#define FASTRNN_CPU_LEVEL portable
#include "cpu/kernels_common.h"

#define CPU_CAPABILITY DEFAULT
#include "cpu/kernels.h"
