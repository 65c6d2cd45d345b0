#include "train/trainer.h"

#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "kernels/backend.h"
#include "core/file_lock.h"
#include "core/fileio.h"
#include "core/memory_budget.h"
#include "core/signals.h"
#include "data/prepared_meta.h"
#include "data/tokenizer.h"
#include "model/model_io.h"
#include "moe/placement.h"
#include "train/checkpoint.h"
#include "train/collective_timer.h"
#include "train/expert_gather.h"
#include "train/grad_sync.h"
#include "train/routing_log.h"

namespace fs = std::filesystem;

namespace mohge {

namespace {

std::string fmt_duration(double s) {
  int t = (int)s;
  return t >= 3600 ? fmt::format("{}h{:02d}m", t / 3600, t / 60 % 60)
                   : fmt::format("{}m{:02d}s", t / 60, t % 60);
}

// Keeps the JSONL log consistent with a resumed run: drop records past the resumed step. Only a
// regular file holds records: a log that is a device (/dev/null, /dev/full: endless bytes to read)
// is left for the writes, which report what they meet.
void truncate_log(const std::string& path, int64_t step) {
  if (!fs::is_regular_file(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("step", (int64_t)0) <= step) kept += line + "\n";
  }
  write_file_atomic(path, kept);
}

// Bytes training certainly needs: fp32 weights, gradients and the AdamW moments (moment_floats:
// 2 per weight, fewer with ZeRO-1), plus the forward activations Model::ensure_acts keeps for a
// BxT batch (the FFN's own buffers come on top).
uint64_t training_bytes_lower_bound(const Model& m, uint64_t moment_floats, int B, int T) {
  const ModelConfig& c = m.cfg;
  const uint64_t N = (uint64_t)B * T, d = c.hidden_size, qd = (uint64_t)c.num_heads * c.head_dim(),
                 kvd = (uint64_t)c.num_kv_heads * c.head_dim();
  const uint64_t per_layer = N * (5 * d + 2 * qd + 2 * kvd + 2) + (uint64_t)B * c.num_heads * T * T;
  return 4 * (2 * (uint64_t)m.params.total() + moment_floats + c.num_layers * per_layer + N * (2 * d + 1 + c.vocab_size));
}

// The step's measurements of every rank (collective over world, unmeasured): the FLOP-proportional
// load its experts carried (Σ rows × width over the MoE layers), the token exchange's bytes to and
// from other ranks and its seconds, the seconds in the gradient collectives (all-reduces; with
// ZeRO-1 reduce-scatters and all-gathers) and the bytes of its AdamW moments; plus max/mean of the load.
nlohmann::json per_rank_record(Collective& world, const Model& m, const CollectiveTimer& exchange,
                               double allreduce_s, int64_t optimizer_state_bytes) {
  const char* names[] = {"expert_load", "exchange_bytes_sent", "exchange_bytes_received", "exchange_s", "allreduce_s",
                         "optimizer_state_bytes"};
  constexpr int K = std::size(names);
  const int P = world.size();
  std::vector<double> v((size_t)P * K, 0.0);
  double* mine = v.data() + (size_t)world.rank() * K;
  for (int l = 0; l < m.cfg.num_layers; l++)
    if (auto r = m.ffn(l).routing()) mine[0] += r->step_expert_load;
  mine[1] = (double)exchange.bytes_sent, mine[2] = (double)exchange.bytes_received;
  mine[3] = exchange.seconds, mine[4] = allreduce_s, mine[5] = (double)optimizer_state_bytes;
  world.allreduce_sum(v.data(), (int64_t)v.size());
  nlohmann::json j;
  for (int k = 0; k < K; k++) {
    std::vector<double> col(P);
    for (int r = 0; r < P; r++) col[r] = v[(size_t)r * K + k];
    j[names[k]] = col;
  }
  double most = 0, total = 0;
  for (int r = 0; r < P; r++) most = std::max(most, v[(size_t)r * K]), total += v[(size_t)r * K];
  j["expert_load_max_over_mean"] = total > 0 ? most * P / total : 1.0;
  return j;
}

}  // namespace

TrainSummary train_run(const RunConfig& rc, const TrainOptions& opt) {
  const TrainConfig& tc = rc.train;
  MOHGE_CHECK(opt.validate, "train_run: no validation function");
  Backend& be = backend_get(rc.run.backend);  // one line naming why it cannot run here, before any work
  if (tc.threads > 0) omp_set_num_threads(tc.threads);
  const int T = tc.seq_len;
  // Data × expert parallel: every rank trains on its B/P rows of each global micro-batch; the loss
  // scale carries 1/P so the summed gradients are the global batch's mean (GradientSync).
  const ParallelGroups* par = opt.parallel;
  const int P = par && par->world ? par->world->size() : 1, rank = P > 1 ? par->world->rank() : 0;
  const bool lead = rank == 0;  // prints, writes the log and the checkpoints
  MOHGE_CHECK(tc.batch_size % P == 0, "train.batch_size = {} does not split over {} ranks", tc.batch_size, P);
  const int B = tc.batch_size / P;
  MOHGE_CHECK(P == 1 || be.host_accessible(), "run.backend = \"{}\": training over MPI exchanges host memory; "
              "use the cpu backend", rc.run.backend);

  Tokenizer tok = Tokenizer::load(rc.data.tokenizer);
  MOHGE_CHECK(tok.vocab_size() <= rc.model.vocab_size,
              "tokenizer {} has {} tokens but model.vocab_size is {}", rc.data.tokenizer,
              tok.vocab_size(), rc.model.vocab_size);
  auto train_shard = std::make_shared<TokenShard>(rc.data.dir + "/train.bin");
  auto val_shard = std::make_shared<TokenShard>(rc.data.dir + "/val.bin");
  for (auto* s : {train_shard.get(), val_shard.get()}) check_tokenizer_matches_shard(tok, rc.data.tokenizer, *s);
  DataLoader train_loader(train_shard, B, T, tc.seed, rank, P);
  DataLoader val_loader(val_shard, B, T, tc.seed, rank, P);  // this rank's rows of each global batch

  if (rc.model.ffn_kind == FfnKind::mohge) {  // all_size must balance the reported device count
    const MoeConfig& m = rc.model.moe;
    try {
      place_experts(PlacementPolicy::all_size, m.expert_widths, m.num_expert_groups, m.experts_per_group,
                    tc.routing_devices);
    } catch (const Error& e) {
      fail("train.routing_devices = {}: {}", tc.routing_devices, e.what());
    }
  }
  if (lead) fs::create_directories(tc.out_dir);
  // held until the run returns: two runs into one directory would mix their checkpoints
  const std::string lock_path = tc.out_dir + "/.lock";
  std::optional<FileLock> lock;
  if (lead) lock.emplace(lock_path);
  MOHGE_CHECK(!lead || lock->held(), "{} is in use by another training run (it holds {}): wait for it to end, or set another train.out_dir",
              tc.out_dir, lock_path);
  const std::string log_path = tc.out_dir + "/log.jsonl";
  ModelConfig mc = rc.model;
  if (par && par->expert) mc.expert_parallel.rank = par->expert->rank();
  // the job's collectives, measured for the step log's per-rank record
  std::optional<CollectiveTimer> t_world, t_expert, t_expert_data;
  ParallelGroups timed;
  if (P > 1) {
    t_world.emplace(*par->world), t_expert.emplace(*par->expert), t_expert_data.emplace(*par->expert_data);
    timed = {&*t_world, &*t_expert, &*t_expert_data};
  }
  const ParallelGroups* groups = P > 1 ? &timed : nullptr;
  Model model(mc, be, groups);  // refuses weights + gradients that exceed the memory (ParamTable::allocate)
  GradientSync sync(model.params, groups, rc.parallel.zero1);
  const std::vector<ParamRange> owned = sync.owned();
  uint64_t moment_floats = 0;
  for (const ParamRange& r : owned) moment_floats += 2 * (uint64_t)(r.end - r.begin);
  if (model.params.backend().host_accessible())
    require_memory(training_bytes_lower_bound(model, moment_floats, B, T),
                   fmt::format("training {} parameters with batch {}x{} (weights, gradients, AdamW moments, activations)",
                               model.params.count(), B, T));
  AdamW adamw(model.params, {tc.beta1, tc.beta2, tc.eps, tc.weight_decay, tc.decay_norms_and_embeddings}, owned);
  TrainerState st;
  st.loader = train_loader.state();
  const bool resumed = opt.resume && fs::exists(fs::path(tc.out_dir) / "checkpoints");
  if (resumed) {
    std::string dir = checkpoint_resolve(tc.out_dir);
    MOHGE_CHECK(checkpoint_config_json(dir) == model_config_to_json(model.cfg),
                "--resume: the model config differs from the checkpoint in {}", dir);
    model_load_weights(dir, model, /*own_experts_only=*/mc.expert_parallel.size > 1);
    checkpoint_load_training(dir, model, adamw, st);
    if (st.step >= tc.steps) {  // nothing to train: the run directory stays as it is
      TrainSummary done;
      done.steps = st.step;
      done.checkpoint = dir;
      done.already_complete = true;
      return done;
    }
    train_loader.set_state(st.loader);
    if (lead) truncate_log(log_path, st.step), fmt::print("resumed from {} (step {})\n", dir, st.step);
  } else {
    // never overwrite an earlier run's checkpoints: they are the user's data
    const fs::path ck = fs::path(tc.out_dir) / "checkpoints";
    MOHGE_CHECK(!lead || !fs::exists(ck) || fs::is_empty(ck),
                "{} holds checkpoints of an earlier run: continue it with --resume, or set another train.out_dir",
                tc.out_dir);
    model.init_weights(tc.seed);
  }
  std::ofstream log;
  if (lead) log.open(log_path, resumed ? std::ios::app : std::ios::trunc);
  MOHGE_CHECK(!lead || log.good(), "cannot write {}: {}", log_path, std::strerror(errno));
  // one record per line, flushed: a full disk fails the step that meets it, not silently at exit
  auto append_log = [&](const nlohmann::json& rec) {
    if (!lead) return;
    log << rec.dump() << '\n' << std::flush;
    MOHGE_CHECK(log.good(), "cannot write {}: {}", log_path, std::strerror(errno));
  };

  InterruptScope interrupt;  // SIGINT / SIGTERM / SIGHUP: checkpoint, then stop
  const bool progress = opt.progress && lead;
  const bool tty = progress && isatty(fileno(stdout));
  std::vector<int32_t> in((size_t)B * T), tg((size_t)B * T);
  TrainSummary sum;
  Context ctx(model, Mode::train);
  RoutingLog routing(ctx, tc.routing_devices);
  const int64_t first_step = st.step;
  const double tokens_per_step = (double)tc.batch_size * T * tc.grad_accum;  // the global batch's, whatever P
  double run_s = 0.0;
  nlohmann::json last_routing;  // routing metrics of the last step, stored with checkpoints
  auto save = [&] {
    st.loader = train_loader.state();
    // ZeRO-1: every rank's moments gathered first; expert parallel: EP group 0 gathers every expert
    // on rank 0 (the other groups hold replicas). So the files are those of one process whatever P is.
    std::optional<AdamW> gathered;
    if (sync.sharded()) gathered.emplace(sync.gather_moments(model.params, adamw));
    const AdamW& whole = gathered ? *gathered : adamw;
    FullModel full;
    if (mc.expert_parallel.size > 1 && rank < mc.expert_parallel.size) full = gather_experts(model, whole, *par->expert);
    if (lead)
      sum.checkpoint = checkpoint_save(tc.out_dir, full.model ? *full.model : model, full.opt ? *full.opt : whole, st,
                                       tok.serialized(), rc.toml, tc.keep_checkpoints, last_routing);
  };
  auto evaluate = [&] {
    ValLoss r = opt.validate(model, val_loader, tc.eval_batches);
    if (P > 1) {  // the global batches' mean: Σ loss·tokens / Σ tokens over the ranks
      const double tokens = sync.mean((double)r.tokens);
      r.loss = sync.mean(r.loss * (double)r.tokens) / tokens;
      r.tokens = (uint64_t)std::llround(tokens * P);
    }
    sum.val_loss = r.loss;
    append_log({{"step", st.step}, {"val_loss", r.loss}, {"val_ppl", std::exp(r.loss)}, {"val_tokens", r.tokens}});
    return r;
  };

  while (st.step < tc.steps) {
    if (const int sig = sync.any(interrupt.signal())) {  // every rank stops at the same step
      sum.interrupted_by = sig;
      break;
    }
    auto t0 = std::chrono::steady_clock::now();
    if (P > 1) t_world->reset(), t_expert->reset(), t_expert_data->reset();
    model.params.zero_grad();
    model.begin_step();
    routing.begin_step();
    double lm = 0.0, aux = 0.0;
    std::map<std::string, double> aux_terms;
    for (int micro = 0; micro < tc.grad_accum; micro++) {
      train_loader.next_batch(in.data(), tg.data());
      lm += model.forward(ctx, in.data(), tg.data(), B, T, st.step) / tc.grad_accum;
      aux += ctx.aux_loss() / tc.grad_accum;
      for (auto& [k, v] : ctx.aux_terms()) aux_terms[k] += v / tc.grad_accum;
      routing.add_micro_batch();
      model.backward(ctx, 1.0f / ((float)tc.grad_accum * P));
    }
    sync.reduce(model.params);
    const double norm = sync.global_norm(model.params);
    lm = sync.mean(lm), aux = sync.mean(aux);
    sync.mean(aux_terms);
    MOHGE_CHECK(std::isfinite(norm) && std::isfinite(lm),
                "training diverged at step {} (loss {}, grad norm {}): lower train.lr", st.step, lm, norm);
    const double lr = lr_schedule(st.step, tc.steps, tc.warmup_steps, tc.lr, tc.min_lr);
    adamw.step(model.params, lr, st.step + 1, grad_clip_factor(norm, tc.grad_clip));
    sync.share_weights(model.params);
    st.step++;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    st.tokens += tokens_per_step;
    st.elapsed_s += dt;
    run_s += dt;
    const double tps = tokens_per_step * (st.step - first_step) / run_s;
    sum.train_loss = lm;
    sum.tokens_per_s = tps;

    nlohmann::json rec = {{"step", st.step}, {"loss", lm + aux}, {"lm_loss", lm},  {"lr", lr},
                          {"grad_norm", norm}, {"tokens_per_s", tokens_per_step / dt},
                          {"tokens", st.tokens}, {"elapsed_s", st.elapsed_s}};
    if (model.cfg.is_moe()) {
      rec["aux_loss"] = aux;
      rec["aux"] = aux_terms;
      last_routing = routing.step_record();
      last_routing["step"] = st.step;
      rec["routing"] = last_routing;
    }
    if (P > 1)
      rec["ranks"] = per_rank_record(*par->world, model, *t_expert, t_world->seconds + t_expert_data->seconds,
                                     adamw.state_bytes());
    append_log(rec);

    const double eta = (tc.steps - st.step) * run_s / (st.step - first_step);
    std::string line = fmt::format("step {:>6}/{} | loss {:.4f} | lr {:.2e} | grad {:.3f} | {:.0f} tok/s | ETA {}",
                                   st.step, tc.steps, lm + aux, lr, norm, tps, fmt_duration(eta));
    if (tty) fmt::print("\r{}\033[K", line), std::fflush(stdout);
    else if (progress && (st.step % tc.log_every == 0 || st.step == tc.steps))
      fmt::print("{}\n", line), std::fflush(stdout);  // live in logs and pipes too

    bool last = st.step == tc.steps;
    bool stop = opt.stop_after > 0 && st.step - first_step >= opt.stop_after;
    if ((tc.eval_every > 0 && st.step % tc.eval_every == 0) || last) {
      ValLoss r = evaluate();
      if (progress) fmt::print("{}step {:>6} | val loss {:.4f} | val ppl {:.2f}\n", tty ? "\n" : "", st.step, r.loss, std::exp(r.loss));
    }
    if ((tc.checkpoint_every > 0 && st.step % tc.checkpoint_every == 0) || last || stop) save();
    if (stop) break;
  }
  if (sum.interrupted_by) {
    save();
    if (lead) fmt::print("\ninterrupted by {}: checkpoint {} written; continue with --resume\n",
               signal_name(sum.interrupted_by), sum.checkpoint);
  }
  if (lead) {
    log.close();
    MOHGE_CHECK(!log.fail(), "cannot write {}: {}", log_path, std::strerror(errno));
  }
  sum.steps = st.step;
  return sum;
}

}  // namespace mohge
