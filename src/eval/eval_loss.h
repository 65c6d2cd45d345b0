// defines: EvalResult, evaluate_loss — validation loss / perplexity over non-overlapping windows
#pragma once
#include "data/dataloader.h"
#include "model/model.h"

namespace mohge {

struct EvalResult {
  double loss = 0;        // mean next-token cross-entropy (nats)
  double perplexity = 0;
  uint64_t tokens = 0;    // target tokens scored
  uint64_t batches = 0;
};

// Scores up to max_batches batches (0 = the whole shard) from the start of the shard. A loader of
// rank r of a job scores that rank's windows of each global batch (data/dataloader.h); the job's
// loss is Σ loss·tokens / Σ tokens over its ranks (tokens may be 0 on a rank, then loss is 0).
EvalResult evaluate_loss(const Model& model, DataLoader& loader, uint64_t max_batches);

}  // namespace mohge
