// The emulated runtime's state (runtime.h): the running thread's coordinates, the thread
// order, the last launch error, the counters.
#include "cuda_emu/runtime.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

namespace fastrnn {
namespace cuda {
inline namespace emulated {  // cuda/target.h

thread_local ThreadCoordinates current{};

namespace {

ThreadOrder order_from_environment() {
  const char* order = std::getenv("FASTRNN_EMULATE_CUDA_ORDER");
  if (order != nullptr && std::strcmp(order, "reverse") == 0) return ThreadOrder::Reverse;
  if (order != nullptr && std::strcmp(order, "shuffled") == 0) return ThreadOrder::Shuffled;
  return ThreadOrder::Forward;  // fastrnn/_ops.py refuses any other value at import
}

struct OrderState {
  ThreadOrder order = order_from_environment();
  std::mt19937_64 shuffle{20260};
};
OrderState& order_state() {
  static OrderState state;
  return state;
}

thread_local cudaError_t last_error = cudaSuccess;
thread_local std::vector<uint64_t> permutation;

}  // namespace

void set_thread_order(ThreadOrder order) {
  order_state().order = order;
  order_state().shuffle.seed(20260);  // the same shuffles again: a run can be repeated
}

ThreadOrder thread_order() { return order_state().order; }

Counters& counters() {
  static Counters counts;
  return counts;
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() {
  const cudaError_t error = last_error;
  last_error = cudaSuccess;
  return error;
}

bool launch_is_valid(dim3 grid, dim3 block, size_t shared_bytes) {
  const uint64_t per_block = uint64_t(block.x) * block.y * block.z;
  return grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 2147483647u &&
         grid.y <= 65535u && grid.z <= 65535u && block.x >= 1 && block.y >= 1 &&
         block.z >= 1 && block.x <= 1024u && block.y <= 1024u && block.z <= 64u &&
         per_block <= 1024u && shared_bytes <= 48u * 1024u;
}

void record_invalid_launch() { last_error = cudaErrorInvalidConfiguration; }

ThreadSchedule::ThreadSchedule(uint64_t n) : n_(n) {
  switch (thread_order()) {
    case ThreadOrder::Forward:
      return;
    case ThreadOrder::Reverse:
      reverse_ = true;
      return;
    case ThreadOrder::Shuffled:
      permutation.resize(n);
      std::iota(permutation.begin(), permutation.end(), uint64_t(0));
      std::shuffle(permutation.begin(), permutation.end(), order_state().shuffle);
      permutation_ = permutation.data();
      return;
  }
}

}  // namespace emulated
}  // namespace cuda
}  // namespace fastrnn
