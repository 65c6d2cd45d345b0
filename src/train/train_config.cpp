#include "train/train_config.h"

#include "core/error.h"

namespace mohge {

RunConfig run_config_read(const std::string& path, const std::vector<std::string>& overrides) {
  TomlDoc doc = path.empty() ? TomlDoc::parse_string("", "<defaults>") : TomlDoc::parse_file(path);
  for (auto& o : overrides) doc.apply_override(o);
  doc.check_sections({"model", "moe", "data", "train"});
  RunConfig rc;
  rc.model = model_config_read(doc);

  TomlSection d(doc, "data");
  d.get("dir", rc.data.dir);
  d.get("tokenizer", rc.data.tokenizer);
  d.finish();
  if (rc.data.tokenizer.empty()) rc.data.tokenizer = rc.data.dir + "/tokenizer.model";

  TrainConfig& t = rc.train;
  TomlSection s(doc, "train");
  int64_t seed = (int64_t)t.seed;
  s.get("batch_size", t.batch_size);
  s.get("seq_len", t.seq_len);
  s.get("grad_accum", t.grad_accum);
  s.get("steps", t.steps);
  s.get("lr", t.lr);
  s.get("min_lr", t.min_lr);
  s.get("warmup_steps", t.warmup_steps);
  s.get("weight_decay", t.weight_decay);
  s.get("beta1", t.beta1);
  s.get("beta2", t.beta2);
  s.get("eps", t.eps);
  s.get("grad_clip", t.grad_clip);
  s.get("decay_norms_and_embeddings", t.decay_norms_and_embeddings);
  s.get("seed", seed);
  s.get("eval_every", t.eval_every);
  s.get("eval_batches", t.eval_batches);
  s.get("checkpoint_every", t.checkpoint_every);
  s.get("keep_checkpoints", t.keep_checkpoints);
  s.get("log_every", t.log_every);
  s.get("out_dir", t.out_dir);
  s.get("threads", t.threads);
  s.get("routing_devices", t.routing_devices);
  s.finish();
  t.seed = (uint64_t)seed;
  auto positive = [](const char* k, double v) { MOHGE_CHECK(v > 0, "train.{} must be > 0 (got {})", k, v); };
  auto nonneg = [](const char* k, double v) { MOHGE_CHECK(v >= 0, "train.{} must be >= 0 (got {})", k, v); };
  positive("batch_size", t.batch_size);
  positive("seq_len", t.seq_len);
  positive("grad_accum", t.grad_accum);
  positive("steps", t.steps);
  positive("lr", t.lr);
  nonneg("min_lr", t.min_lr);
  nonneg("warmup_steps", t.warmup_steps);
  nonneg("weight_decay", t.weight_decay);
  nonneg("grad_clip", t.grad_clip);
  positive("eps", t.eps);
  nonneg("eval_every", t.eval_every);
  positive("eval_batches", t.eval_batches);
  nonneg("checkpoint_every", t.checkpoint_every);
  positive("keep_checkpoints", t.keep_checkpoints);
  positive("log_every", t.log_every);
  nonneg("threads", t.threads);
  positive("routing_devices", t.routing_devices);
  MOHGE_CHECK(t.beta1 >= 0 && t.beta1 < 1 && t.beta2 >= 0 && t.beta2 < 1,
              "train.beta1 and train.beta2 must be in [0, 1)");
  MOHGE_CHECK(t.seq_len <= rc.model.max_seq_len, "train.seq_len = {} exceeds model.max_seq_len = {}",
              t.seq_len, rc.model.max_seq_len);
  rc.toml = doc.to_toml();
  return rc;
}

}  // namespace mohge
