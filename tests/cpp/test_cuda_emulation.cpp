// The CUDA back-end under its emulation (csrc/cuda_emu/), built with AddressSanitizer and
// UndefinedBehaviorSanitizer (ctest): every operator's sequence walk, forward and backward,
// for every cell (LSTM with and without projection, both GRUs, Elman tanh and relu), the
// four dtypes, both directions, with and without lengths and zoneout, each buffer allocated at exactly
// its size (an access past it is reported with its line) and filled with NaN beforehand
// (a read of memory nothing wrote reaches an output as NaN). Each walk also runs with the
// threads of every launch in forward, reverse and shuffled order, compared bit for bit (a
// thread reading another's write differs), and each dtype against the float64 walk of the
// same inputs. Then the emulation itself: the launch's checks and coordinates, and
// cublasGemmEx against a plain column-major reference, including its refusals.
#include "cuda_emu/emulated.h"

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda/entry_points.h"
#include "cuda_emu/cublas.h"
#include "sequence/common.h"

namespace emu = fastrnn::cuda::emulated;

namespace {

int failures = 0;
int checks = 0;

void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

// ---------------------------------------------------------------- buffers
// n elements of one dtype in an allocation of exactly their size, NaN until written.
class Buffer {
 public:
  Buffer(at::ScalarType type, int64_t n)
      : type_(type), n_(n), bytes_(n * static_cast<int64_t>(c10::elementSize(type))),
        data_(new unsigned char[std::max<int64_t>(bytes_, 1)]) {
    for (int64_t i = 0; i < n_; ++i) set(i, std::numeric_limits<double>::quiet_NaN());
  }
  void* data() { return data_.get(); }
  const void* data() const { return data_.get(); }
  int64_t size() const { return n_; }
  at::ScalarType type() const { return type_; }

  void set(int64_t i, double v) {
    switch (type_) {
      case at::kDouble: reinterpret_cast<double*>(data_.get())[i] = v; break;
      case at::kFloat: reinterpret_cast<float*>(data_.get())[i] = static_cast<float>(v); break;
      case at::kHalf:
        reinterpret_cast<c10::Half*>(data_.get())[i] = c10::Half(static_cast<float>(v));
        break;
      default:
        reinterpret_cast<c10::BFloat16*>(data_.get())[i] = c10::BFloat16(static_cast<float>(v));
    }
  }
  double get(int64_t i) const {
    switch (type_) {
      case at::kDouble: return reinterpret_cast<const double*>(data_.get())[i];
      case at::kFloat: return reinterpret_cast<const float*>(data_.get())[i];
      case at::kHalf: return static_cast<float>(reinterpret_cast<const c10::Half*>(data_.get())[i]);
      default: return static_cast<float>(reinterpret_cast<const c10::BFloat16*>(data_.get())[i]);
    }
  }
  // uniform in [-scale, scale], rounded to the buffer's type
  void fill_random(std::mt19937_64& rng, double scale) {
    std::uniform_real_distribution<double> uniform(-scale, scale);
    for (int64_t i = 0; i < n_; ++i) set(i, uniform(rng));
  }
  // a copy of the same values in another type
  Buffer as(at::ScalarType type) const {
    Buffer out(type, n_);
    for (int64_t i = 0; i < n_; ++i) out.set(i, get(i));
    return out;
  }
  bool same_bytes(const Buffer& other) const {
    return bytes_ == other.bytes_ && std::memcmp(data_.get(), other.data_.get(), bytes_) == 0;
  }

 private:
  at::ScalarType type_;
  int64_t n_, bytes_;
  std::unique_ptr<unsigned char[]> data_;
};

// Elements [begin, end) of `b` all finite (written), else a failure naming `what`.
void expect_written(const Buffer& b, const std::string& what, int64_t begin = 0,
                    int64_t end = -1) {
  if (end < 0) end = b.size();
  int64_t bad = 0, first = -1;
  for (int64_t i = begin; i < end; ++i) {
    if (!std::isfinite(b.get(i))) {
      if (first < 0) first = i;
      ++bad;
    }
  }
  expect(bad == 0, what + ": " + std::to_string(bad) + " elements not written (first at " +
                       std::to_string(first) + ")");
}

// Every element within `tolerance` of float64's (relative to 1 + |float64's|); with
// `spare`, all but a hundredth of them: a relu whose pre-activation lies within rounding of
// zero in 16 bits passes or stops its gradient otherwise than float64 does.
void expect_near(const Buffer& got, const Buffer& want, double tolerance,
                 const std::string& what, bool spare = false) {
  std::vector<double> errors;
  for (int64_t i = 0; i < got.size(); ++i) {
    const double a = got.get(i), b = want.get(i);
    if (std::isnan(a) && std::isnan(b)) continue;  // both unwritten (finished rows' gates)
    const double err = std::abs(a - b) / (1 + std::abs(b));
    errors.push_back(std::isnan(err) ? INFINITY : err);
  }
  std::sort(errors.begin(), errors.end());
  const size_t kept = spare ? errors.size() - errors.size() / 100 : errors.size();
  const double worst = kept == 0 ? 0 : errors[kept - 1];
  expect(worst <= tolerance, what + ": differs from float64 by " + std::to_string(worst));
}

// ---------------------------------------------------------------- one layer's walks
enum class Cell { Lstm, LstmProj, GruAfter, GruBefore, RnnTanh, RnnRelu };
const char* cell_name(Cell c) {
  switch (c) {
    case Cell::Lstm: return "lstm";
    case Cell::LstmProj: return "lstm_proj";
    case Cell::GruAfter: return "gru";
    case Cell::GruBefore: return "gru_reset_before";
    case Cell::RnnTanh: return "rnn_tanh";
    case Cell::RnnRelu: return "rnn_relu";
  }
  return "?";
}
int64_t gates_of(Cell c) {
  if (c == Cell::Lstm || c == Cell::LstmProj) return 4;
  return c == Cell::GruAfter || c == Cell::GruBefore ? 3 : 1;
}
at::ScalarType acc_of(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

struct Config {
  Cell cell;
  at::ScalarType dtype;
  bool reverse;
  bool with_lengths;
  int grad_output_kind;  // 0: none, 1: every step its own, 2: one broadcast along time
  int zoneout_kind;      // 0: none, 1: masks (training), 2: the keep probability alone
};

constexpr double kZoneout = 0.3;

// Sizes that leave partial blocks (B*H = 3*100: two blocks of 256) and a projection
// narrower than the cell.
constexpr int64_t kT = 5, kB = 3, kH = 100, kProj = 37;

// Inputs of one layer, drawn once per configuration in its dtype (the float64 walk gets
// the same values).
struct Inputs {
  Buffer input_gates, w_hh, b_hh, w_hr, h0, c0, grad_output, grad_h_n, grad_c_n;
  Buffer zoneout_h, zoneout_c;  // 0/1 masks [T, B, P] and [T, B, H] (zoneout_kind 1)
  Buffer grad_cells;            // [T, B, H]: of the LSTM's every-step cell states
  std::vector<int64_t> lengths;
};

// Zoneout's arguments for the entry points (params.h): the masks, or p, or nothing.
struct ZoneoutArgs {
  const void* h = nullptr;
  const void* c = nullptr;
  double p = 0;
};
ZoneoutArgs zoneout_args(const Config& c, const Inputs& in) {
  if (c.zoneout_kind == 1) return {in.zoneout_h.data(), in.zoneout_c.data(), 0};
  return {nullptr, nullptr, c.zoneout_kind == 2 ? kZoneout : 0};
}

Inputs draw_inputs(const Config& c, std::mt19937_64& rng) {
  const int64_t G = gates_of(c.cell) * kH;
  const bool proj = c.cell == Cell::LstmProj;
  const int64_t P = proj ? kProj : kH;
  const at::ScalarType t = c.dtype, acc = acc_of(t);
  Inputs in{Buffer(t, kT * kB * G), Buffer(t, G * P), Buffer(t, G), Buffer(t, proj ? P * kH : 0),
            Buffer(t, kB * P), Buffer(acc, kB * kH), Buffer(t, kT * kB * P), Buffer(acc, kB * P),
            Buffer(acc, kB * kH), Buffer(t, kT * kB * P), Buffer(t, kT * kB * kH),
            Buffer(t, kT * kB * kH), {}};
  in.input_gates.fill_random(rng, 1.0);
  in.w_hh.fill_random(rng, 1.0 / std::sqrt(double(P)));
  in.b_hh.fill_random(rng, 0.5);
  in.w_hr.fill_random(rng, 1.0 / std::sqrt(double(kH)));
  in.h0.fill_random(rng, 1.0);
  in.c0.fill_random(rng, 1.0);
  in.grad_output.fill_random(rng, 1.0);
  in.grad_h_n.fill_random(rng, 1.0);
  in.grad_c_n.fill_random(rng, 1.0);
  in.grad_cells.fill_random(rng, 1.0);
  if (c.with_lengths) in.lengths = {kT, 0, 3};  // unsorted, one empty, one full
  std::bernoulli_distribution keep(kZoneout);
  for (Buffer* mask : {&in.zoneout_h, &in.zoneout_c}) {
    for (int64_t i = 0; i < mask->size(); ++i) mask->set(i, keep(rng) ? 1.0 : 0.0);
  }
  return in;
}

Inputs converted(const Inputs& in, at::ScalarType t) {
  const at::ScalarType acc = acc_of(t);
  return {in.input_gates.as(t), in.w_hh.as(t), in.b_hh.as(t), in.w_hr.as(t), in.h0.as(t),
          in.c0.as(acc), in.grad_output.as(t), in.grad_h_n.as(acc), in.grad_c_n.as(acc),
          in.zoneout_h.as(t), in.zoneout_c.as(t), in.grad_cells.as(t), in.lengths};
}

// What one configuration's forward (inference and training) and backward wrote.
struct Results {
  std::vector<Buffer> buffers;
  std::vector<std::string> names;
  void add(std::string name, Buffer b) {
    names.push_back(std::move(name));
    buffers.push_back(std::move(b));
  }
  const Buffer& operator[](const std::string& name) const {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return buffers[i];
    }
    std::abort();
  }
};

fastrnn::SequenceArgs sequence(const Config& c, const Inputs& in, bool keep_all) {
  const int64_t P = c.cell == Cell::LstmProj ? kProj : kH;
  // as on a GPU: the lengths in "device" memory, no host copy, every GEMM over the batch
  return {kT, kB, kH, P, c.reverse, keep_all,
          in.lengths.empty() ? nullptr : in.lengths.data(), c.dtype};
}

// What one forward walk writes, each buffer sized as the drivers size it: the whole history
// when saving for backward, else two state slots and one step's gates.
struct Forward {
  Buffer hs, cs, gates, extra, proj_in, output, recurrent, cells;
};

Forward forward(const Config& c, const Inputs& in, bool keep_all) {
  const int64_t G = gates_of(c.cell) * kH;
  const bool proj = c.cell == Cell::LstmProj;
  const int64_t P = proj ? kProj : kH;
  const int64_t slots = keep_all ? kT + 1 : 2, steps = keep_all ? kT : 1;
  const at::ScalarType t = c.dtype, acc = acc_of(t);
  Forward f{Buffer(t, slots * kB * P),         Buffer(acc, slots * kB * kH),
            Buffer(acc, steps * kB * G),       Buffer(t, steps * kB * kH),
            Buffer(t, proj ? steps * kB * kH : 0), Buffer(t, kT * kB * P),
            Buffer(acc, kB * kH), Buffer(t, kT * kB * kH)};
  const int64_t first = fastrnn::initial_state_slot(kT, c.reverse, keep_all);
  for (int64_t i = 0; i < kB * P; ++i) f.hs.set(first * kB * P + i, in.h0.get(i));
  for (int64_t i = 0; i < kB * kH; ++i) f.cs.set(first * kB * kH + i, in.c0.get(i));
  const fastrnn::SequenceArgs s = sequence(c, in, keep_all);
  const void* b_hh = in.b_hh.data();
  const ZoneoutArgs z = zoneout_args(c, in);
  if (gates_of(c.cell) == 4) {
    emu::lstm_forward({s, in.input_gates.data(), in.w_hh.data(), b_hh,
                       proj ? in.w_hr.data() : nullptr, f.hs.data(), f.cs.data(),
                       f.gates.data(), proj ? f.proj_in.data() : nullptr, f.output.data(), z.h,
                       z.c, z.p, f.cells.data()});
  } else if (gates_of(c.cell) == 3) {
    emu::gru_forward({s, c.cell == Cell::GruAfter, in.input_gates.data(), in.w_hh.data(), b_hh,
                      f.hs.data(), f.gates.data(), f.extra.data(), f.output.data(), z.h, z.p});
  } else {
    emu::rnn_forward({s, c.cell == Cell::RnnRelu, in.input_gates.data(), in.w_hh.data(), b_hh,
                      f.hs.data(), f.recurrent.data(), f.output.data(), z.h, z.p});
  }
  return f;
}

Results run(const Config& c, const Inputs& in) {
  const int64_t G = gates_of(c.cell) * kH;
  const bool lstm = gates_of(c.cell) == 4, gru = gates_of(c.cell) == 3;
  const bool proj = c.cell == Cell::LstmProj;
  const int64_t P = proj ? kProj : kH;
  const at::ScalarType t = c.dtype, acc = acc_of(t);
  Results r;

  Forward inference = forward(c, in, false);
  const int64_t last = fastrnn::final_state_slot(kT, c.reverse, false);
  expect_written(inference.output, "inference output");
  if (lstm) expect_written(inference.cells, "inference cell sequence");
  expect_written(inference.hs, "inference h_n", last * kB * P, (last + 1) * kB * P);
  if (lstm) expect_written(inference.cs, "inference c_n", last * kB * kH, (last + 1) * kB * kH);
  r.add("inference output", std::move(inference.output));
  r.add("inference h_n", std::move(inference.hs));
  r.add("inference c_n", std::move(inference.cs));

  // Training: the whole history, then the backward walk over it.
  Forward training = forward(c, in, true);
  Buffer &hs = training.hs, &cs = training.cs, &gates = training.gates;
  Buffer &extra = training.extra, &proj_in = training.proj_in, &output = training.output;
  const fastrnn::SequenceArgs s = sequence(c, in, true);
  const void* w_hr = proj ? in.w_hr.data() : nullptr;
  expect_written(output, "training output");
  expect_written(hs, "state history");
  if (lstm) expect_written(cs, "cell-state history");
  if (gru) expect_written(extra, "saved n-part");
  if (proj) expect_written(proj_in, "projection input");

  // The incoming gradients: none, one per step, or one step's broadcast along time.
  const void* grad_output = c.grad_output_kind == 0 ? nullptr : in.grad_output.data();
  const int64_t grad_output_step = c.grad_output_kind == 1 ? kB * P : 0;
  Buffer dh = in.grad_h_n.as(acc), dc = in.grad_c_n.as(acc);
  Buffer grad_gates(t, kT * kB * G), grad_hh_n(t, kT * kB * kH), grad_proj_out(t, kT * kB * P);
  Buffer grad_proj_in(acc, kB * kH), dz(acc, kB * kH), d_reset_h(acc, kB * kH);  // scratch
  const ZoneoutArgs z = zoneout_args(c, in);
  if (lstm) {
    emu::lstm_backward({s, grad_output, grad_output_step, in.w_hh.data(), w_hr, cs.data(),
                        gates.data(), dh.data(), dc.data(), grad_gates.data(),
                        proj ? grad_proj_out.data() : nullptr,
                        proj ? grad_proj_in.data() : nullptr, z.h, z.c, z.p,
                        grad_output == nullptr ? nullptr : in.grad_cells.data(),
                        grad_output_step == 0 ? 0 : kB * kH});
  } else if (gru) {
    const bool after = c.cell == Cell::GruAfter;
    emu::gru_backward({s, after, grad_output, grad_output_step, in.w_hh.data(), hs.data(),
                       gates.data(), extra.data(), dh.data(), grad_gates.data(),
                       after ? grad_hh_n.data() : nullptr, after ? nullptr : dz.data(),
                       after ? nullptr : d_reset_h.data(), z.h, z.p});
  } else {
    emu::rnn_backward({s, c.cell == Cell::RnnRelu, grad_output, grad_output_step,
                       in.w_hh.data(), hs.data(), dh.data(), grad_gates.data(), z.h, z.p});
  }
  expect_written(grad_gates, "gradient of the gates");
  expect_written(dh, "gradient of h0");
  if (lstm) expect_written(dc, "gradient of c0");
  if (c.cell == Cell::GruAfter) expect_written(grad_hh_n, "gradient of W_hn h + b_hn");
  if (proj) expect_written(grad_proj_out, "gradient of the projected outputs");

  r.add("training output", std::move(output));
  r.add("state history", std::move(hs));
  r.add("cell-state history", std::move(cs));
  r.add("saved gates", std::move(gates));
  r.add("saved n-part", std::move(extra));
  r.add("projection input", std::move(proj_in));
  r.add("gradient of the gates", std::move(grad_gates));
  r.add("gradient of h0", std::move(dh));
  r.add("gradient of c0", std::move(dc));
  r.add("gradient of W_hn h + b_hn", std::move(grad_hh_n));
  r.add("gradient of the projected outputs", std::move(grad_proj_out));
  return r;
}

std::string describe(const Config& c) {
  static const char* grads[] = {"no output gradient", "output gradients",
                                "a broadcast output gradient"};
  static const char* zoneouts[] = {"", ", zoneout masks", ", zoneout's expected value"};
  return std::string(cell_name(c.cell)) + " " + c10::toString(c.dtype) +
         (c.reverse ? " reversed" : "") + (c.with_lengths ? " with lengths" : "") + ", " +
         grads[c.grad_output_kind] + zoneouts[c.zoneout_kind];
}

// One configuration: its walks in the three thread orders, bit for bit, and against float64.
void check_walks(const Config& c, const Inputs& in) {
  emu::set_thread_order(emu::ThreadOrder::Forward);
  const Results forward = run(c, in);
  for (emu::ThreadOrder order : {emu::ThreadOrder::Reverse, emu::ThreadOrder::Shuffled}) {
    emu::set_thread_order(order);
    const Results other = run(c, in);
    for (size_t i = 0; i < forward.buffers.size(); ++i) {
      expect(forward.buffers[i].same_bytes(other.buffers[i]),
             describe(c) + ": " + forward.names[i] + " depends on the thread order (" +
                 (order == emu::ThreadOrder::Reverse ? "reverse" : "shuffled") + ")");
    }
  }
  emu::set_thread_order(emu::ThreadOrder::Forward);
  if (c.dtype != at::kDouble) {  // against float64 on the same inputs
    Config exact = c;
    exact.dtype = at::kDouble;
    const Results want = run(exact, converted(in, at::kDouble));
    const double tolerance =
        c.dtype == at::kFloat ? 1e-4 : c.dtype == at::kHalf ? 2e-2 : 8e-2;
    for (const char* name : {"training output", "inference output", "gradient of the gates",
                             "gradient of h0", "gradient of c0"}) {
      expect_near(forward[name], want[name], tolerance, describe(c) + ": " + name,
                  c.cell == Cell::RnnRelu && c.dtype != at::kFloat);
    }
  }
}

void test_walks() {
  const Cell cells[] = {Cell::Lstm,      Cell::LstmProj, Cell::GruAfter,
                        Cell::GruBefore, Cell::RnnTanh,  Cell::RnnRelu};
  const at::ScalarType dtypes[] = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16};
  std::mt19937_64 rng(7);
  int variant = 0;
  for (Cell cell : cells) {
    for (at::ScalarType dtype : dtypes) {
      for (bool reverse : {false, true}) {
        for (bool with_lengths : {false, true}) {
          const Config c{cell, dtype, reverse, with_lengths, variant % 3, (variant / 3) % 3};
          ++variant;
          const int failed_before = failures;
          const Inputs in = draw_inputs(c, rng);
          try {
            check_walks(c, in);
          } catch (const std::exception& e) {  // a refused launch or cuBLAS call
            expect(false, describe(c) + ": " + e.what());
          }
          if (failures > failed_before) std::printf("  in %s\n", describe(c).c_str());
        }
      }
    }
  }
}

// ---------------------------------------------------------------- the emulation itself
std::vector<int64_t> seen;  // how often each flat thread index ran

void record_thread(int64_t stride_y) {
  const int64_t block = blockIdx.x + int64_t(blockIdx.y) * gridDim.x;
  const int64_t thread = threadIdx.x + int64_t(threadIdx.y) * blockDim.x;
  seen[static_cast<size_t>(block * stride_y + thread)] += 1;
}

void test_launches() {
  using emu::dim3;
  for (emu::ThreadOrder order :
       {emu::ThreadOrder::Forward, emu::ThreadOrder::Reverse, emu::ThreadOrder::Shuffled}) {
    emu::set_thread_order(order);
    seen.assign(3 * 2 * 64, 0);  // grid 3 x 2, blocks of 16 x 4
    emu::launch_kernel(&record_thread, dim3(3, 2), dim3(16, 4), 0, nullptr, int64_t(64));
    expect(emu::cudaGetLastError() == emu::cudaSuccess, "a valid launch succeeds");
    bool once = true;
    for (int64_t n : seen) once = once && n == 1;
    expect(once, "a launch runs every thread of every block exactly once");
  }
  emu::set_thread_order(emu::ThreadOrder::Forward);
  struct Bad {
    dim3 grid, block;
    size_t shared;
    const char* what;
  };
  const Bad bad[] = {{dim3(0), dim3(256), 0, "an empty grid"},
                     {dim3(1), dim3(0), 0, "an empty block"},
                     {dim3(1), dim3(1025), 0, "a block of 1025 threads"},
                     {dim3(1), dim3(32, 33), 0, "a block of 32 x 33 threads"},
                     {dim3(1), dim3(1, 1, 65), 0, "a block 65 deep"},
                     {dim3(1, 65536), dim3(1), 0, "a grid 65536 high"},
                     {dim3(1), dim3(1), 49 * 1024, "49 KB of static shared memory"}};
  for (const Bad& b : bad) {
    seen.assign(1, 0);
    emu::launch_kernel(&record_thread, b.grid, b.block, b.shared, nullptr, int64_t(0));
    expect(emu::cudaGetLastError() == emu::cudaErrorInvalidConfiguration && seen[0] == 0,
           std::string(b.what) + " is refused (cudaErrorInvalidConfiguration, nothing runs)");
    expect(emu::cudaGetLastError() == emu::cudaSuccess, "reading the last error resets it");
  }
}

// C = alpha op(A) op(B) + beta C in double, column-major, straight from the definition.
void reference_gemm(bool ta, bool tb, int m, int n, int k, double alpha, const Buffer& a,
                    int lda, const Buffer& b, int ldb, double beta, std::vector<double>& c,
                    int ldc, bool tf32) {
  auto value = [&](const Buffer& x, int64_t i) {
    const double v = x.get(i);
    return tf32 ? double(emu::round_to_tf32(float(v))) : v;
  };
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      double sum = 0;
      for (int l = 0; l < k; ++l) {
        sum += value(a, ta ? l + int64_t(i) * lda : i + int64_t(l) * lda) *
               value(b, tb ? j + int64_t(l) * ldb : l + int64_t(j) * ldb);
      }
      double& out = c[static_cast<size_t>(i + int64_t(j) * ldc)];
      out = alpha * sum + (beta == 0 ? 0.0 : beta * out);
    }
  }
}

emu::cudaDataType_t data_type(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return emu::CUDA_R_64F;
    case at::kHalf: return emu::CUDA_R_16F;
    case at::kBFloat16: return emu::CUDA_R_16BF;
    default: return emu::CUDA_R_32F;
  }
}

void test_gemm() {
  std::mt19937_64 rng(11);
  const auto handle = emu::default_handle();
  struct Types {
    at::ScalarType ab, c;
    emu::cublasComputeType_t compute;
    double tolerance;
  };
  const Types types[] = {{at::kDouble, at::kDouble, emu::CUBLAS_COMPUTE_64F, 1e-12},
                         {at::kFloat, at::kFloat, emu::CUBLAS_COMPUTE_32F, 1e-5},
                         {at::kFloat, at::kFloat, emu::CUBLAS_COMPUTE_32F_FAST_TF32, 1e-5},
                         {at::kHalf, at::kFloat, emu::CUBLAS_COMPUTE_32F, 1e-5},
                         {at::kHalf, at::kHalf, emu::CUBLAS_COMPUTE_32F, 2e-3},
                         {at::kBFloat16, at::kFloat, emu::CUBLAS_COMPUTE_32F, 1e-5},
                         {at::kBFloat16, at::kBFloat16, emu::CUBLAS_COMPUTE_32F, 1e-2}};
  const int m = 7, n = 5, k = 9, pad = 3;  // leading dimensions 3 beyond the minimum
  for (const Types& ty : types) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (double beta : {0.0, 1.0}) {
          const int lda = (ta ? k : m) + pad, ldb = (tb ? n : k) + pad, ldc = m + pad;
          // the padding stays NaN: reading it through a wrong leading dimension shows
          Buffer a(ty.ab, int64_t(lda) * (ta ? m : k)), b(ty.ab, int64_t(ldb) * (tb ? k : n));
          Buffer c(ty.c, int64_t(ldc) * n);
          for (int col = 0; col < (ta ? m : k); ++col)
            for (int row = 0; row < (ta ? k : m); ++row)
              a.set(row + int64_t(col) * lda, std::uniform_real_distribution<double>(-1, 1)(rng));
          for (int col = 0; col < (tb ? k : n); ++col)
            for (int row = 0; row < (tb ? n : k); ++row)
              b.set(row + int64_t(col) * ldb, std::uniform_real_distribution<double>(-1, 1)(rng));
          std::vector<double> want(static_cast<size_t>(c.size()), 0.0);
          for (int j = 0; j < n; ++j) {
            for (int i = 0; i < m; ++i) {
              const int64_t at_c = i + int64_t(j) * ldc;
              if (beta != 0) c.set(at_c, std::uniform_real_distribution<double>(-1, 1)(rng));
              want[static_cast<size_t>(at_c)] = c.get(at_c);  // NaN stays NaN where beta = 0
            }
          }
          const bool is_double = ty.compute == emu::CUBLAS_COMPUTE_64F;
          const double alpha_d = 1.5, beta_d = beta;
          const float alpha_f = 1.5f, beta_f = static_cast<float>(beta);
          const void* alpha = is_double ? static_cast<const void*>(&alpha_d) : &alpha_f;
          const void* beta_p = is_double ? static_cast<const void*>(&beta_d) : &beta_f;
          const auto status = emu::cublasGemmEx(
              handle, ta ? emu::CUBLAS_OP_T : emu::CUBLAS_OP_N,
              tb ? emu::CUBLAS_OP_T : emu::CUBLAS_OP_N, m, n, k, alpha, a.data(),
              data_type(ty.ab), lda, b.data(), data_type(ty.ab), ldb, beta_p, c.data(),
              data_type(ty.c), ldc, ty.compute, emu::CUBLAS_GEMM_DEFAULT);
          reference_gemm(ta, tb, m, n, k, 1.5, a, lda, b, ldb, beta, want, ldc,
                         ty.compute == emu::CUBLAS_COMPUTE_32F_FAST_TF32);
          double worst = 0;
          bool padding_untouched = true;
          for (int j = 0; j < n; ++j) {
            for (int i = 0; i < ldc; ++i) {
              const int64_t at_c = i + int64_t(j) * ldc;
              if (i >= m) {
                padding_untouched = padding_untouched && std::isnan(c.get(at_c));
                continue;
              }
              const double err = std::abs(c.get(at_c) - want[static_cast<size_t>(at_c)]);
              worst = std::isnan(err) ? INFINITY : std::max(worst, err);
            }
          }
          const std::string what = std::string("cublasGemmEx ") + c10::toString(ty.ab) +
                                   " -> " + c10::toString(ty.c) + (ta ? " A^T" : " A") +
                                   (tb ? " B^T" : " B") + " beta " + std::to_string(int(beta));
          expect(status == emu::CUBLAS_STATUS_SUCCESS, what + " succeeds");
          expect(worst <= ty.tolerance * k, what + ": error " + std::to_string(worst));
          expect(padding_untouched, what + ": writes only the m rows of each column of C");
        }
      }
    }
  }

  // TF32: inputs keep 10 mantissa bits, rounded to nearest, ties away from zero
  expect(emu::round_to_tf32(1.0f + 0x1p-11f) == 1.0f + 0x1p-10f, "TF32 rounds a tie away");
  expect(emu::round_to_tf32(1.0f + 0x1p-12f) == 1.0f, "TF32 rounds below a tie down");
  expect(emu::round_to_tf32(-1.0f - 0x1p-11f) == -1.0f - 0x1p-10f, "TF32 rounds -tie away");

  // What cuBLAS refuses (each call otherwise valid: 2 x 2 times 2 x 2, float).
  struct Call {
    const char* what;
    emu::cublasStatus_t want;
    int op_a = emu::CUBLAS_OP_N, m = 2, n = 2, k = 2, lda = 2, ldb = 2, ldc = 2;
    emu::cudaDataType_t ab = emu::CUDA_R_32F, c = emu::CUDA_R_32F;
    emu::cublasComputeType_t compute = emu::CUBLAS_COMPUTE_32F;
    bool no_handle = false;
  };
  using S = emu::cublasStatus_t;
  const S invalid = emu::CUBLAS_STATUS_INVALID_VALUE;
  const S unsupported = emu::CUBLAS_STATUS_NOT_SUPPORTED;
  const Call calls[] = {
      {.what = "no handle", .want = emu::CUBLAS_STATUS_NOT_INITIALIZED, .no_handle = true},
      {.what = "m < 0", .want = invalid, .m = -1},
      {.what = "k < 0", .want = invalid, .k = -1},
      {.what = "lda < m", .want = invalid, .m = 4, .lda = 3, .ldc = 4},
      {.what = "lda < k for A^T", .want = invalid, .op_a = emu::CUBLAS_OP_T, .k = 3, .ldb = 3},
      {.what = "ldb < k", .want = invalid, .k = 3},
      {.what = "ldc < m", .want = invalid, .m = 4, .lda = 4, .ldc = 3},
      {.what = "lda = 0 for m = 0", .want = invalid, .m = 0, .lda = 0, .ldc = 1},
      {.what = "an operation that is not one", .want = invalid, .op_a = 7},
      {.what = "double inputs, float compute", .want = unsupported, .ab = emu::CUDA_R_64F},
      {.what = "float inputs into a half C", .want = unsupported, .c = emu::CUDA_R_16F},
      {.what = "half inputs with TF32", .want = unsupported, .ab = emu::CUDA_R_16F,
       .c = emu::CUDA_R_16F, .compute = emu::CUBLAS_COMPUTE_32F_FAST_TF32},
      {.what = "float inputs, double compute", .want = unsupported,
       .compute = emu::CUBLAS_COMPUTE_64F},
      {.what = "m = 0 (nothing to do)", .want = emu::CUBLAS_STATUS_SUCCESS, .m = 0, .lda = 1,
       .ldc = 1},
  };
  float x[64] = {}, alpha = 1, beta = 0;
  for (const Call& c : calls) {
    const S status = emu::cublasGemmEx(
        c.no_handle ? nullptr : handle, static_cast<emu::cublasOperation_t>(c.op_a),
        emu::CUBLAS_OP_N, c.m, c.n, c.k, &alpha, x, c.ab, c.lda, x, c.ab, c.ldb, &beta, x, c.c,
        c.ldc, c.compute, emu::CUBLAS_GEMM_DEFAULT);
    expect(status == c.want, std::string("cublasGemmEx with ") + c.what + ": " +
                                 emu::cublasGetStatusName(status) + ", want " +
                                 emu::cublasGetStatusName(c.want));
  }
}

}  // namespace

int main() {
  test_launches();
  test_gemm();
  test_walks();
  std::printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
