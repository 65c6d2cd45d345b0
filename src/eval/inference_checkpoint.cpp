// defines: open_inference_checkpoint (eval/inference_checkpoint.h)
#include "eval/inference_checkpoint.h"

#include <filesystem>
#include <future>

#include "core/error.h"
#include "data/prepared_meta.h"

namespace mohge {

InferenceCheckpoint open_inference_checkpoint(const std::string& path, Backend& be, const std::string& weights_dtype) {
  const std::string dir = checkpoint_resolve(path);
  const std::string tok_path = dir + "/tokenizer.model";
  // a failed model load rethrows at once; the future's destructor waits for the tokenizer's thread
  auto tok = std::async(std::launch::async, [&] {
    MOHGE_CHECK(std::filesystem::exists(tok_path), "{}: checkpoint has no tokenizer.model", dir);
    return Tokenizer::load(tok_path);
  });
  std::unique_ptr<Model> model = model_load_inference(dir, be, weights_dtype);
  InferenceCheckpoint ck{std::move(model), tok.get()};
  check_tokenizer_fits_model(ck.tok, tok_path, ck.model->cfg.vocab_size);
  return ck;
}

}  // namespace mohge
