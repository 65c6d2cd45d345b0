#include "eval/eval_loss.h"

#include <algorithm>
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
    r.batches++;
    // A rank with no rows in the last global batch still runs one forward (whatever its buffers
    // hold), not counted: over expert-parallel ranks every forward is a collective exchange.
    const double loss = model.forward(ctx, in.data(), tg.data(), std::max(rows, 1), T);
    sum += loss * rows * T;
    r.tokens += (uint64_t)rows * T;
  }
  MOHGE_CHECK(r.batches > 0, "evaluation data has no complete window of {} tokens", T + 1);
  // a rank of a job may have no windows at all (fewer windows than ranks): its share is empty
  r.loss = r.tokens ? require_finite(sum / (double)r.tokens, "the validation loss") : 0.0;  // never "loss": null
  r.perplexity = std::exp(r.loss);
  return r;
}

}  // namespace mohge
