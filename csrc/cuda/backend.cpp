// The drivers as the operators' CUDA kernels, running the CUDA back-end (entry_points.h).
// Compiled only when fastrnn is built with CUDA.
#include "backend_registration.h"
#include "cuda/entry_points.h"

FASTRNN_REGISTER_BACKEND(CUDA, &fastrnn::cuda::kBackend)
