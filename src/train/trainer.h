// defines: TrainSummary, train_run — the training loop
// No globals: everything a run needs comes in through RunConfig; state lives in the Trainer
// objects of one call, so tests (and later, ranks) can run several trainers in one process.
#pragma once
#include <functional>
#include <string>

#include "data/dataloader.h"
#include "model/model.h"
#include "train/train_config.h"

namespace mohge {

// Validation: mean next-token cross-entropy (nats) of the model over up to max_batches batches
// from the start of the loader (0 = all), and the target tokens scored. Training does not depend
// on evaluation: the caller passes eval's evaluate_loss (cli/cmd_train.cpp).
struct ValLoss {
  double loss = 0;
  uint64_t tokens = 0;
};
using ValidateFn = std::function<ValLoss(Model&, DataLoader&, uint64_t max_batches)>;

struct TrainSummary {
  int64_t steps = 0;
  double train_loss = 0;  // mean LM loss of the last step
  double val_loss = 0;
  double tokens_per_s = 0;
  std::string checkpoint;  // the last checkpoint written (already_complete: the newest one)
  int interrupted_by = 0;  // the signal that stopped the run after a checkpoint, 0 if none
  bool already_complete = false;  // resumed at train.steps or beyond: nothing was trained or written
};

struct TrainOptions {
  bool resume = false;    // continue from the newest checkpoint in train.out_dir
  bool progress = true;   // live progress display on stdout
  int stop_after = 0;     // stop (with a checkpoint) after this many steps of this call; 0 = run to the end
  ValidateFn validate;    // required
  // This rank's place in a `mpirun -np P` job (rc.parallel; issue 9); null: one process. Every
  // rank calls train_run; only rank 0 prints, writes the log and the checkpoints.
  const ParallelGroups* parallel = nullptr;
};

TrainSummary train_run(const RunConfig& rc, const TrainOptions& opt);

}  // namespace mohge
