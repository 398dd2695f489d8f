// What an operator's driver (csrc/{lstm,gru,rnn}.cpp) hands to a device back-end: one layer
// in one direction over a padded sequence, as raw pointers and sizes, in the style of
// flash-attention's Flash_fwd_params. The driver has checked every argument, allocated
// every buffer and placed the initial state in its history slot; the back-end runs the
// whole sequence (forward or backward through time) in whatever way suits its device.
//
// Pointers are to contiguous row-major memory on the data's device. "T" is the storage
// dtype (`dtype`), "A" its accumulation type (float for half and bfloat16).
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>

namespace fastrnn {

struct SequenceArgs {
  int64_t T, B, H;          // time steps, batch, hidden units
  int64_t P;                // width of the recurrent state h: proj_size, or H
  bool reverse;             // walk t = T-1 .. 0
  bool keep_all;            // the whole state history (T+1 slots), else two alternating slots
  const int64_t* lengths;   // [B], or null: every sequence is T long
  c10::ScalarType dtype;    // T
  // The lengths again when the host can read them and they are longest first (packed input
  // is): the sequences still running at a step are then a prefix of the batch, and the
  // step's recurrent GEMMs skip the finished rows, whose results the point-wise steps never
  // read. Null otherwise (every GEMM runs over the whole batch).
  const int64_t* sorted_host_lengths = nullptr;

  // Rows taking part in step t: those of the first sequences, while t < their length.
  int64_t rows_running(int64_t t) const {
    if (sorted_host_lengths == nullptr) return B;
    int64_t lo = 0, hi = B;  // lengths are non-increasing: find the first with length <= t
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (sorted_host_lengths[mid] > t) lo = mid + 1; else hi = mid;
    }
    return lo;
  }
};

struct LstmForwardArgs {
  SequenceArgs seq;
  const void* input_gates;  // [T, B, 4H] T   x W_ih^T + b_ih, all steps
  const void* w_hh;         // [4H, P] T
  const void* b_hh;         // [4H] T or null
  const void* w_hr;         // [P, H] T or null
  void* hs;                 // [slots, B, P] T   state history (initial state in place)
  void* cs;                 // [slots, B, H] A   cell-state history
  void* gates;              // [T or 1, B, 4H] A   post-activation i, f, g, o
  void* proj_in;            // [T or 1, B, H] T, or null: o * tanh(c) before the projection
  void* output;             // [T, B, P] T
  // Zoneout (steps.h): the masks [T, B, P] of h and [T, B, H] of c, in T, or null with
  // zoneout_p the keep probability (evaluation); zoneout_p 0 and no masks: none.
  const void* zoneout_h = nullptr;
  const void* zoneout_c = nullptr;
  double zoneout_p = 0;
  void* cells = nullptr;     // [T, B, H] T or null: every step's cell state (zeros where a
                            // sequence has ended), returned as an output
};

struct LstmBackwardArgs {
  SequenceArgs seq;         // keep_all is true: the forward's saved history
  const void* grad_output;  // [T, B, P] T or null
  int64_t grad_output_step; // between its time steps: B*P, or 0 (OutputGrad, drivers.h)
  const void* w_hh;         // [4H, P] T
  const void* w_hr;         // [P, H] T or null
  const void* cs;           // [T+1, B, H] A
  const void* gates;        // [T, B, 4H] A
  void* dh;                 // [B, P] A   in: gradient of h_n; out: of h0
  void* dc;                 // [B, H] A   in: gradient of c_n; out: of c0
  void* grad_gates;         // [T, B, 4H] T   out: gradient of the pre-activations
  void* grad_proj_out;      // [T, B, P] T or null: gradient reaching each projected output
  void* grad_proj_in;       // [B, H] A or null: scratch, gradient of the projection's input
  // Zoneout (steps.h): the masks [T, B, P] of h and [T, B, H] of c, in T, or null with
  // zoneout_p the keep probability (evaluation); zoneout_p 0 and no masks: none.
  const void* zoneout_h = nullptr;
  const void* zoneout_c = nullptr;
  double zoneout_p = 0;
  const void* grad_cells = nullptr;  // [T, B, H] T or null: the gradient of `cells`
  int64_t grad_cells_step = 0;       // between its time steps (as grad_output_step)
};

struct GruForwardArgs {
  SequenceArgs seq;
  bool reset_after;         // torch.nn's GRU; false: Cho et al.'s reset before the product
  const void* input_gates;  // [T, B, 3H] T
  const void* w_hh;         // [3H, H] T
  const void* b_hh;         // [3H] T or null
  void* hs;                 // [slots, B, H] T
  void* gates;              // [T or 1, B, 3H] A   post-activation r, z, n
  void* extra;              // [T or 1, B, H] T   W_hn h + b_hn (reset after) or r * h (before)
  void* output;             // [T, B, H] T
  // Zoneout (steps.h): the mask [T, B, H] of h, in T, or null with zoneout_p the keep
  // probability (evaluation); zoneout_p 0 and no mask: none.
  const void* zoneout_h = nullptr;
  double zoneout_p = 0;
};

struct GruBackwardArgs {
  SequenceArgs seq;
  bool reset_after;
  const void* grad_output;  // [T, B, H] T or null
  int64_t grad_output_step; // between its time steps: B*H, or 0 (OutputGrad, drivers.h)
  const void* w_hh;         // [3H, H] T
  const void* hs;           // [T+1, B, H] T
  const void* gates;        // [T, B, 3H] A
  const void* extra;        // [T, B, H] T
  void* dh;                 // [B, H] A   in: gradient of h_n; out: of h0
  void* grad_gates;         // [T, B, 3H] T   gradient of the input gates
  void* grad_hh_n;          // [T, B, H] T    of W_hn h + b_hn (reset after; else null): the
                            // recurrent pre-activations' r and z parts are grad_gates'
  void* dz;                 // [B, H] A   scratch (reset before; else null)
  void* d_reset_h;          // [B, H] A   scratch (reset before; else null)
  // Zoneout (steps.h): the mask [T, B, H] of h, in T, or null with zoneout_p the keep
  // probability (evaluation); zoneout_p 0 and no mask: none.
  const void* zoneout_h = nullptr;
  double zoneout_p = 0;
};

struct RnnForwardArgs {
  SequenceArgs seq;
  bool relu;                // else tanh
  const void* input_gates;  // [T, B, H] T
  const void* w_hh;         // [H, H] T
  const void* b_hh;         // [H] T or null
  void* hs;                 // [slots, B, H] T
  void* recurrent;          // [B, H] A   scratch: h W_hh^T
  void* output;             // [T, B, H] T
  // Zoneout (steps.h): the mask [T, B, H] of h, in T, or null with zoneout_p the keep
  // probability (evaluation); zoneout_p 0 and no mask: none.
  const void* zoneout_h = nullptr;
  double zoneout_p = 0;
};

struct RnnBackwardArgs {
  SequenceArgs seq;
  bool relu;
  const void* grad_output;  // [T, B, H] T or null
  int64_t grad_output_step; // between its time steps: B*H, or 0 (OutputGrad, drivers.h)
  const void* w_hh;         // [H, H] T
  const void* hs;           // [T+1, B, H] T
  void* dh;                 // [B, H] A
  void* grad_gates;         // [T, B, H] T
  // Zoneout (steps.h): the mask [T, B, H] of h, in T, or null with zoneout_p the keep
  // probability (evaluation); zoneout_p 0 and no mask: none.
  const void* zoneout_h = nullptr;
  double zoneout_p = 0;
};

// The layer-normalised LSTM (csrc/layernorm_lstm.cpp): float32 or float64 (`float64`),
// every buffer contiguous. hs and cs are indexed by processing step (slot s: the state
// step s reads; slot 0 holds the initial state), everything else by time step.
struct LayerNormLstmForwardArgs {
  bool float64;
  int64_t T, B, H;
  double eps;
  const int64_t* lengths;  // [B] or null: a row keeps its state from its length on
  bool reverse;
  const void* input_gates;  // [T, B, 4H] the input side, LN(x W_ih^T) gamma_ih + biases
  const void* w_hh;         // [4H, H]
  const void* gamma_hh;     // [4H]
  const void* gamma_c;      // [H]
  const void* beta_c;       // [H] or null
  void* hs;                 // [T+1, B, H]
  void* cs;                 // [T+1, B, H]
  void* output;             // [T, B, H]
  void* gates;              // [T, B, 4H] post-activation i, f, g, o
  void* recurrent_hat;      // [T, B, 4H] LN(h_prev W_hh^T)
  void* cell_hat;           // [T, B, H] LN(c)
  void* rstd;               // [T, B, 2] 1/sqrt(var + eps) of the recurrent product and of c
  void* recurrent;          // [B, 4H] scratch: h_prev W_hh^T
  // zoneout (cells/zoneout.h): the keep masks of h and c [T, B, H] by time step (training),
  // or null with zoneout_p the keep weight of every unit (evaluation; 0: no zoneout)
  const void* zoneout_h;
  const void* zoneout_c;
  double zoneout_p;
  // false (inference): the saved buffers hold one step (gates, recurrent_hat, cell_hat,
  // rstd: slot 0) and the states two (hs, cs: slots alternate), not the whole sequence
  bool save;

  int64_t saved_at(int64_t t) const { return save ? t : 0; }
  int64_t state_at(int64_t s) const { return save ? s : s % 2; }
};

struct LayerNormLstmBackwardArgs {
  bool float64;
  int64_t T, B, H;
  const int64_t* lengths;
  bool reverse;
  const void* grad_output;  // [T, B, H] or null
  const void* w_hh;
  const void* gamma_hh;
  const void* gamma_c;
  const void* beta_c;
  const void* cs;           // the forward's buffers, as above
  const void* gates;
  const void* recurrent_hat;
  const void* cell_hat;
  const void* rstd;
  void* dh;                 // [B, H] in: d h_n; out: d h_0
  void* dc;                 // [B, H] in: d c_n; out: d c_0
  void* grad_gates;         // [T, B, 4H] out: d a, by time step
  void* grad_recurrent;     // [T, B, 4H] out: d (h_prev W_hh^T), by processing step
  void* grad_cell_norm;     // [T, B, H] out: d (gamma_c LN(c) + beta_c), by time step
  const void* zoneout_h;    // as in the forward
  const void* zoneout_c;
  double zoneout_p;
  const void* grad_cells;   // [T, B, H] or null: d of every step's (carried) cell state
};

// The layer-normalised GRU (csrc/layernorm_gru.cpp), both reset forms: float32 or float64,
// every buffer contiguous. hs and reset_h are indexed by processing step, everything else
// by time step, as for the LSTM above.
struct LayerNormGruForwardArgs {
  bool float64;
  int64_t T, B, H;
  double eps;
  const int64_t* lengths;
  bool reverse;
  bool reset_after;         // torch.nn's form; else Cho et al.'s (reset before the product)
  const void* input_gates;  // [T, B, 3H] the input side, LN(x W_ih^T) gamma_ih + biases
  const void* w_hh;         // [3H, H]
  const void* gamma_hh;     // [3H]
  const void* beta_n;       // [H] or null: the candidate's recurrent LN bias
  void* hs;                 // [T+1, B, H]
  void* output;             // [T, B, H]
  void* gates;              // [T, B, 3H] post-activation r, z, n
  void* recurrent_hat;      // [T, B, 3H] the normalised recurrent products
  void* rstd;               // [T, B, 2] 1/sqrt(var + eps): of the whole product (reset
                            // after) or of its r,z part and of its n part (reset before)
  void* reset_h;            // [T, B, H] r * h_prev (reset before; unused otherwise)
  void* recurrent;          // [B, 3H] scratch: the step's recurrent products
  const void* zoneout_h;    // [T, B, H] keep masks, or null with zoneout_p (as the LSTM's)
  double zoneout_p;
  bool save;                // as the LSTM's: false keeps one step (reset_h: slot 0 too)

  int64_t saved_at(int64_t t) const { return save ? t : 0; }
  int64_t state_at(int64_t s) const { return save ? s : s % 2; }
};

struct LayerNormGruBackwardArgs {
  bool float64;
  int64_t T, B, H;
  const int64_t* lengths;
  bool reverse;
  bool reset_after;
  const void* grad_output;  // [T, B, H] or null
  const void* w_hh;
  const void* gamma_hh;
  const void* beta_n;
  const void* hs;           // the forward's buffers, as above
  const void* gates;
  const void* recurrent_hat;
  const void* rstd;
  void* dh;                 // [B, H] in: d h_n; out: d h_0
  void* grad_gates;         // [T, B, 3H] out: d input_gates, by time step
  void* grad_norm;          // [T, B, 3H] out: d (gamma_hh LN(.) + beta), by time step
  void* grad_recurrent;     // [T, B, 3H] out: d of the recurrent products, by processing step
  void* scratch;            // [B, H] (reset before): d (r * h_prev) of one step
  const void* zoneout_h;    // as in the forward
  double zoneout_p;
};

}  // namespace fastrnn
