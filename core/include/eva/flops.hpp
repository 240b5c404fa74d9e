// eva — the model FLOPs of a training step, counted exactly from the configuration, for the model
// FLOPs utilisation (MFU = step FLOPs ÷ step time ÷ peak, eva/peak.hpp).
//
// Counted are the matrix products the model's definition requires (what any implementation must do),
// not what eva happens to execute:
//   Linear layers  2·in·out FLOPs per token forward for every weight matrix a token uses — wq (or wq_a
//                  and wq_b), wkv_a, wkv_b, wo; the dense SwiGLU's w1, w2, w3; in MoE layers the gate,
//                  the top-k routed experts and the shared experts; the output head. The embedding is
//                  a lookup and costs none. Backward costs twice the forward (the input gradient and the
//                  weight gradient are one product each), so a training step is 6·N_matmul·tokens.
//   attention      per layer, head and sequence, QKᵀ over the causal half — T(T+1)/2 query–key pairs,
//                  2·(nope + rope) FLOPs each — and P·V over the same pairs, 2·v_head_dim each;
//                  backward twice the forward again (dQ and dK from dS; dP and dV).
//   MTP modules    module k (eva/mtp.hpp) runs on the T−k positions of each sequence whose target lies
//                  inside the window: eh_proj (2·dim → dim), one MLA + MoE block and the shared output
//                  head, each counted like the main model's (6·weights per position, and the causal
//                  attention over its T−k positions).
// Elementwise work (norms, softmax, SiLU, RoPE, the optimizer) is left out, as MFU conventionally does.
#pragma once

#include <cstdint>

#include "eva/config.hpp"

namespace eva {

struct StepFlops {
    double matmul_weights = 0;  // N_matmul: weights of the Linear products one token goes through
    double linear = 0;          // 6·N_matmul·tokens
    double attention = 0;       // 3 × the causal QKᵀ and PV products
    double mtp = 0;             // the MTP modules' Linear and attention FLOPs together
    double total() const { return linear + attention + mtp; }
};

/// FLOPs of one training step (forward + backward) on `batch` sequences of `seq_len` tokens.
StepFlops training_step_flops(const ModelArgs& args, std::int64_t batch, std::int64_t seq_len);

}  // namespace eva
