// defines: TrainConfig, DataConfig, RunSettings, ParallelConfig, RunConfig, run_config_read,
//          run_config_reference
// A run is one TOML file ([model], [moe], [data], [train], [run], [parallel]); every key can be overridden
// with --set section.key=value. Unknown keys and sections are errors. Every key is declared once,
// in its section's schema (core/config_schema.h); `mohge config --keys` prints them all.
#pragma once
#include <string>

#include "core/toml_config.h"
#include "model/model_config.h"

namespace mohge {

struct ConfigSection;  // core/config_schema.h

struct DataConfig {
  std::string dir = "data/default";  // holds train.bin, val.bin (mohge data prepare)
  std::string tokenizer;             // default: <dir>/tokenizer.model
};

struct TrainConfig {
  int batch_size = 8;      // sequences per micro-batch
  int seq_len = 256;
  int grad_accum = 1;      // micro-batches per optimizer step
  int steps = 1000;
  double lr = 1e-3;
  double min_lr = 1e-4;    // cosine decays lr -> min_lr
  int warmup_steps = 50;
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;  // global-norm clip; 0 = off
  bool decay_norms_and_embeddings = false;
  uint64_t seed = 1337;
  int eval_every = 100;    // steps; 0 = only at the end
  int eval_batches = 20;
  int checkpoint_every = 200;  // steps; 0 = only at the end
  int keep_checkpoints = 2;
  int log_every = 10;      // progress lines when stdout is not a terminal
  std::string out_dir = "runs/default";
  int threads = 0;         // 0 = all cores (read from run.threads)
  int routing_devices = 4; // device count of the per-step placement load report (MoE)
};

// How a run executes, not what it computes ([run]). Its values are also copied to
// ModelConfig::matmul_precision and TrainConfig::threads, where the engine reads them today.
struct RunSettings {
  std::string backend = "cpu";                   // a name of kernels/backend.h's registry
  Precision matmul_precision = Precision::fp32;  // fp32 | bf16 (mixed precision, kernels/gemm.h)
  int threads = 0;                               // OpenMP threads; 0 = all cores
};

// How the ranks of `mpirun -np P mohge train` share the work ([parallel]; issue 9, SPEC §5): P =
// data_parallel × expert_parallel. Every rank trains on its 1/P of each global micro-batch
// (train.batch_size sequences); rank p·EP + q is expert-parallel rank q of group p. The defaults,
// one rank, are the single-process engine.
struct ParallelConfig {
  int data_parallel = 1;         // DP: replicas of each expert (expert-data-parallel group size)
  int expert_parallel = 1;       // EP: ranks a layer's experts are split over
  std::string placement = "auto";  // auto (the layout's own: moe/expert_parallel.h) | a PlacementPolicy
  bool zero1 = false;            // ZeRO-1: AdamW moments sharded over the ranks holding each weight
  double timeout_s = 300;        // a collective waiting longer fails the job, naming the rank
  int world() const { return data_parallel * expert_parallel; }
};

struct RunConfig {
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  RunSettings run;
  ParallelConfig parallel;
  std::string toml;  // the resolved config, stored with checkpoints
};

// Reads a TOML file (or the built-in defaults when path is empty) with overrides applied.
RunConfig run_config_read(const std::string& path, const std::vector<std::string>& overrides);
// Every section's schema in file order ([moe] has two: routing and width layout).
std::vector<const ConfigSection*> run_config_sections();
// Markdown reference of every key of every section (docs/CONFIG.md is this text).
std::string run_config_reference();

}  // namespace mohge
