// defines: the [data], [train] and [run] schemas, run_config_read, run_config_reference
#include "train/train_config.h"

#include <sstream>

#include "core/config_schema.h"
#include "core/error.h"
#include "kernels/backend.h"

namespace mohge {

// run.matmul_precision is an enum key: its names are kernels/gemm.h's.
static const char* to_string(Precision p) { return precision_name(p); }
static std::span<const Precision> enum_values(Precision) {
  static constexpr Precision v[] = {Precision::fp32, Precision::bf16};
  return v;
}

constexpr double kMaxSteps = 1e9;  // steps and step intervals

static const ConfigSchema<DataConfig>& data_schema() {
  using D = DataConfig;
  static const ConfigSchema<D> schema{
      "data",
      "The token shards (`mohge data prepare`) and their tokenizer.",
      {
          {"dir", &D::dir, {}, "directory holding train.bin and val.bin"},
          {"tokenizer", &D::tokenizer, {}, "SentencePiece model; \"\" = DIR/tokenizer.model",
           {.default_text = "\"DIR/tokenizer.model\""}},
      }};
  return schema;
}

static const ConfigSchema<TrainConfig>& train_schema() {
  using T = TrainConfig;
  static const ConfigSchema<T> schema{
      "train",
      "The optimisation (AdamW, linear warmup then cosine decay), evaluation, checkpoints and logs.",
      {
          {"batch_size", &T::batch_size, closed(1, 65536), "sequences per micro-batch"},
          {"seq_len", &T::seq_len, closed(1, 1 << 20), "tokens per sequence (≤ model.max_seq_len)"},
          {"grad_accum", &T::grad_accum, closed(1, 65536), "micro-batches per optimizer step"},
          {"steps", &T::steps, closed(1, kMaxSteps), "optimizer steps of the run"},
          {"lr", &T::lr, greater(0), "peak learning rate, reached after warmup_steps"},
          {"min_lr", &T::min_lr, at_least(0), "learning rate at the end of the cosine decay"},
          {"warmup_steps", &T::warmup_steps, closed(0, kMaxSteps), "steps of linear warmup from 0"},
          {"weight_decay", &T::weight_decay, at_least(0), "decoupled weight decay (AdamW)"},
          {"beta1", &T::beta1, closed_open(0, 1), "AdamW β1"},
          {"beta2", &T::beta2, closed_open(0, 1), "AdamW β2"},
          {"eps", &T::eps, greater(0), "AdamW ε"},
          {"grad_clip", &T::grad_clip, at_least(0), "clip the global gradient norm to this; 0 = off"},
          {"decay_norms_and_embeddings", &T::decay_norms_and_embeddings, {},
           "weight decay also on norms and embeddings"},
          {"seed", &T::seed, at_least(0), "initialisation and data order"},
          {"eval_every", &T::eval_every, closed(0, kMaxSteps), "steps between validation losses; 0 = at the end only"},
          {"eval_batches", &T::eval_batches, closed(1, 1e6), "batches per validation loss"},
          {"checkpoint_every", &T::checkpoint_every, closed(0, kMaxSteps),
           "steps between checkpoints; 0 = at the end only"},
          {"keep_checkpoints", &T::keep_checkpoints, closed(1, 1e6), "newest checkpoints kept"},
          {"log_every", &T::log_every, closed(1, kMaxSteps), "steps between progress lines when not on a terminal"},
          {"out_dir", &T::out_dir, {}, "run directory: log.jsonl, checkpoints/"},
          {"routing_devices", &T::routing_devices, closed(1, 4096),
           "devices of the placement load in the step log (MoE); mohge: all_size must balance them"},
      },
      {.moved = {{"threads", "run.threads"}}}};
  return schema;
}

static const ConfigSchema<RunSettings>& run_schema() {
  using R = RunSettings;
  static const ConfigSchema<R> schema{
      "run",
      "How the run executes, not what it computes: none of it is part of config.json.",
      {
          {"backend", &R::backend, one_of(backend_names()), "compute backend (kernels/backend.h)"},
          {"matmul_precision", &R::matmul_precision, {},
           "bf16: matmul inputs rounded to bfloat16, products summed in fp32 (PyTorch autocast); weights, "
           "optimizer, norms, softmaxes, losses and routers stay fp32. About 1.5× on CPUs with AVX512-BF16 "
           "(an error elsewhere)"},
          {"threads", &R::threads, closed(0, 1024), "OpenMP threads; 0 = all cores"},
      }};
  return schema;
}

static const ConfigSchema<ParallelConfig>& parallel_schema() {
  using P = ParallelConfig;
  static const ConfigSchema<P> schema{
      "parallel",
      "Training over MPI (`mpirun -np P mohge train`, P = data_parallel × expert_parallel, docs/SCALING.md): "
      "each rank trains on 1/P of every global batch; dense gradients are averaged over all ranks, an "
      "expert's over the ranks holding it. Not part of config.json: a checkpoint resumes at any P.",
      {
          {"data_parallel", &P::data_parallel, closed(1, 65536), "replicas of every expert (DP)"},
          {"expert_parallel", &P::expert_parallel, closed(1, 65536),
           "ranks each MoE layer's experts are split over (EP; divides moe.num_experts)"},
          {"placement", &P::placement, one_of({"auto", "contiguous", "pairing", "all_size"}),
           "expert → rank placement (SPEC §5); auto: all_size for mohge, pairing for hmoe, contiguous for moe"},
          {"zero1", &P::zero1, {}, "ZeRO-1: shard the AdamW moments over the ranks holding each weight (replicated weights over all P, experts over their DP ranks); gradients are reduce-scattered, updated weights all-gathered; checkpoints unchanged"},
          {"timeout_s", &P::timeout_s, closed(1, 86400),
           "seconds a rank waits in a collective before the job fails, naming the rank"},
      }};
  return schema;
}

RunConfig run_config_read(const std::string& path, const std::vector<std::string>& overrides) {
  TomlDoc doc = path.empty() ? TomlDoc::parse_string("", "<defaults>") : TomlDoc::parse_file(path);
  for (auto& o : overrides) doc.apply_override(o);
  doc.check_sections({"model", "moe", "data", "train", "run", "parallel"});
  RunConfig rc;
  toml::table resolved;
  rc.model = model_config_read(doc, resolved);

  data_schema().read_section(doc.section("data"), rc.data, doc.source());
  if (rc.data.tokenizer.empty()) rc.data.tokenizer = rc.data.dir + "/tokenizer.model";
  train_schema().read_section(doc.section("train"), rc.train, doc.source());
  MOHGE_CHECK(rc.train.seq_len <= rc.model.max_seq_len, "train.seq_len = {} exceeds model.max_seq_len = {}",
              rc.train.seq_len, rc.model.max_seq_len);
  run_schema().read_section(doc.section("run"), rc.run, doc.source());
  std::string why_not;
  MOHGE_CHECK(backend_find(rc.run.backend, &why_not), "run.backend = \"{}\": {}", rc.run.backend, why_not);
  rc.model.matmul_precision = rc.run.matmul_precision;
  rc.train.threads = rc.run.threads;
  parallel_schema().read_section(doc.section("parallel"), rc.parallel, doc.source());
  const ParallelConfig& par = rc.parallel;
  MOHGE_CHECK(rc.train.batch_size % par.world() == 0,
              "train.batch_size = {} must be divisible by the {} ranks of parallel.data_parallel × "
              "parallel.expert_parallel = {} × {} (each rank takes an equal share)",
              rc.train.batch_size, par.world(), par.data_parallel, par.expert_parallel);
  if (par.expert_parallel > 1) {
    MOHGE_CHECK(rc.model.is_moe(), "parallel.expert_parallel = {} needs a mixture-of-experts model (model.ffn_kind "
                "is dense)", par.expert_parallel);
    ExpertParallel& ep = rc.model.expert_parallel;
    ep.size = par.expert_parallel;
    if (par.placement != "auto") ep.placement = placement_from_string(par.placement);
    try {
      expert_slots(rc.model.moe, ep);  // the placement's own refusals, before any rank starts
    } catch (const Error& e) {
      fail("parallel.expert_parallel = {}: {}", par.expert_parallel, e.what());
    }
  }

  resolved.insert_or_assign("data", data_schema().to_toml(rc.data));
  resolved.insert_or_assign("train", train_schema().to_toml(rc.train));
  resolved.insert_or_assign("run", run_schema().to_toml(rc.run));
  resolved.insert_or_assign("parallel", parallel_schema().to_toml(rc.parallel));
  std::stringstream ss;
  ss << resolved;
  rc.toml = ss.str();
  return rc;
}

std::vector<const ConfigSection*> run_config_sections() {
  return {&model_schema(), &moe_schema(), &expert_layout_schema(), &data_schema(), &train_schema(), &run_schema(), &parallel_schema()};
}

std::string run_config_reference() {
  return "# Config reference\n\n"
         "A run is one TOML file of the sections below. Every key is optional (its default applies) and can be "
         "overridden with `--set section.key=value` (the value is parsed as TOML; bare words are strings). "
         "Unknown sections and keys are errors; real values must be finite. `mohge config [CONFIG]` prints a "
         "config fully resolved. This file is the output of `mohge config --keys`.\n" +
         config_reference(run_config_sections());
}

}  // namespace mohge
