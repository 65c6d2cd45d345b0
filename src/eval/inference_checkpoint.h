// defines: InferenceCheckpoint, open_inference_checkpoint — a checkpoint opened to generate from it
// (generate, serve): its model loaded for inference and its tokenizer.model, checked to fit.
#pragma once
#include <memory>
#include <string>

#include "data/tokenizer.h"
#include "model/model_io.h"

namespace mohge {

struct InferenceCheckpoint {
  std::unique_ptr<Model> model;
  Tokenizer tok;
};

// path: a checkpoint or run directory (checkpoint_resolve). The model as model_load_inference
// loads it (backend, weights_dtype) and dir/tokenizer.model, loaded at the same time on two threads:
// each is mostly first reads of new pages (the weights' finiteness check, SentencePiece's heap),
// and together they were 40 of `generate`'s 46 ms startup run one after the other (issue 11).
// Errors (mohge::Error): the model's (checkpoint_resolve, model_load_inference) before the
// tokenizer's (no tokenizer.model, not a SentencePiece model), then a tokenizer with more ids than
// the model's vocabulary (check_tokenizer_fits_model).
InferenceCheckpoint open_inference_checkpoint(const std::string& path, Backend& be, const std::string& weights_dtype);

}  // namespace mohge
