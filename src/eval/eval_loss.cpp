#include "eval/eval_loss.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/finite.h"

namespace mohge {

EvalResult evaluate_loss(const Model& model, DataLoader& loader, uint64_t max_batches) {
  Context ctx(model, Mode::eval);
  const int B = loader.B(), T = loader.T();
  std::vector<int32_t> in((size_t)B * T), tg((size_t)B * T);
  EvalResult r;
  double sum = 0.0;
  int rows = 0;
  loader.reset();
  while ((max_batches == 0 || r.batches < max_batches) && loader.next_eval_batch(in.data(), tg.data(), &rows)) {
    sum += model.forward(ctx, in.data(), tg.data(), rows, T) * rows * T;
    r.tokens += (uint64_t)rows * T;
    r.batches++;
  }
  MOHGE_CHECK(r.tokens > 0, "evaluation data has no complete window of {} tokens", T + 1);
  r.loss = require_finite(sum / (double)r.tokens, "the validation loss");  // never "loss": null
  r.perplexity = std::exp(r.loss);
  return r;
}

}  // namespace mohge
