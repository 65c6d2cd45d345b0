// defines: Mode — what a pass through the model is for, so inference never does training work
#pragma once

namespace mohge {

// train:  Model::forward keeps every layer's activations for backward; MoE layers compute their
//         auxiliary losses and accumulate the step's routing statistics.
// eval:   Model::forward for logits and loss only: no auxiliary losses, no statistics.
// decode: Model::decode over a KV cache (prefill and generation), eval otherwise.
enum class Mode { train, eval, decode };

}  // namespace mohge
