#include "serve/scheduler.h"

#include <algorithm>
#include <random>
#include <tuple>

#include "core/error.h"
#include "core/finite.h"
#include "data/text_stream.h"

namespace mohge {

// A running job: its sequence in the KV cache and its generation state (scheduler thread only).
struct Scheduler::Slot {
  Slot(std::shared_ptr<GenerationJob> j, int s, const Tokenizer& tok)
      : job(std::move(j)), seq(s), rng(job->opt.seed), stream(tok, job->prompt) {}
  std::shared_ptr<GenerationJob> job;
  int seq;
  bool prefilled = false;
  int32_t last = 0;            // the token to feed next
  std::mt19937_64 rng;
  TextStream stream;
  std::string text;            // all text generated so far
  size_t released = 0;         // bytes of text handed out: the rest may be the start of a stop string
  double flops = 0, params_sum = 0;
  int rows = 0, generated = 0;
  Clock::time_point last_token_at;
};

// FLOPs of one token at position pos (0-based): 2 per activated parameter (multiply and add) plus
// attention over the pos + 1 cached positions, q·k and p·v, 2·2·heads·head_dim each, per layer.
static double token_flops(const ModelConfig& c, double active_params, int pos) {
  return 2.0 * active_params + 4.0 * c.num_layers * c.hidden_size * (pos + 1.0);
}

Scheduler::Scheduler(const Model& model, const Tokenizer& tok, Metrics& metrics, const SchedulerOptions& o)
    : model_(model), tok_(tok), metrics_(metrics), opt_(o) {
  MOHGE_CHECK(o.max_seqs >= 1 && o.max_seqs <= 4096, "--max-seqs {} out of range [1, 4096]", o.max_seqs);
  MOHGE_CHECK(o.max_queue >= 0, "--queue {} must be >= 0", o.max_queue);
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

int Scheduler::context_len() const { return model_.cfg.max_seq_len; }

Scheduler::Submit Scheduler::submit(const std::shared_ptr<GenerationJob>& job) {
  {
    std::lock_guard lk(mu_);
    if (draining_ || stop_) return Submit::draining;
    // beyond the free slots, at most max_queue jobs wait
    if ((int)queue_.size() - (opt_.max_seqs - running_) >= opt_.max_queue) return Submit::queue_full;
    job->submitted = Clock::now();
    queue_.push_back(job);
    metrics_.set_queue((int)queue_.size());
  }
  cv_.notify_all();
  return Submit::ok;
}

void Scheduler::drain(Clock::time_point deadline) {
  std::unique_lock lk(mu_);
  draining_ = true;
  if (!cv_.wait_until(lk, deadline, [&] { return queue_.empty() && running_ == 0; })) {
    cancel_all_ = true;  // the loop finishes every job as cancelled
    cv_.notify_all();
    cv_.wait(lk, [&] { return queue_.empty() && running_ == 0; });
  }
}

void Scheduler::finish(GenerationJob& job, const std::string& reason, const std::string& error) {
  metrics_.count_request(reason);  // before the client hears: it may read /metrics at once
  {
    std::lock_guard lk(job.mu);
    job.done = true;
    job.finish_reason = reason;
    job.error = error;
  }
  job.cv.notify_all();
}

void Scheduler::loop() {
  Context ctx(model_, Mode::decode, opt_.max_seqs, context_len());
  std::vector<std::unique_ptr<Slot>> running;
  std::vector<int> free_seqs;
  for (int s = opt_.max_seqs - 1; s >= 0; s--) free_seqs.push_back(s);
  for (;;) {
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || cancel_all_ || !running.empty() || !queue_.empty(); });
      if (stop_) break;
      while (!queue_.empty() && !free_seqs.empty()) {
        auto job = std::move(queue_.front());
        queue_.pop_front();
        if (job->cancelled || cancel_all_) {
          finish(*job, "cancelled");
          continue;
        }
        ctx.clear(free_seqs.back());
        running.push_back(std::make_unique<Slot>(std::move(job), free_seqs.back(), tok_));
        free_seqs.pop_back();
      }
      if (cancel_all_)
        for (auto& j : queue_) finish(*j, "cancelled");
      if (cancel_all_) queue_.clear();
      metrics_.set_queue((int)queue_.size());
    }
    // a cancelled job leaves before its rows are computed: its slot is free this step
    std::erase_if(running, [&](const std::unique_ptr<Slot>& s) {
      if (!s->job->cancelled && !cancel_all_) return false;
      finish(*s->job, "cancelled");
      free_seqs.push_back(s->seq);
      return true;
    });
    if (!running.empty()) step(ctx, running, free_seqs);
    {
      std::lock_guard lk(mu_);
      running_ = (int)running.size();
      metrics_.set_running(running_);
    }
    cv_.notify_all();  // drain() waits for an empty scheduler
  }
  for (auto& s : running) finish(*s->job, "cancelled");
  std::lock_guard lk(mu_);
  for (auto& j : queue_) finish(*j, "cancelled");
  queue_.clear();
  running_ = 0;
}

// The longest proper prefix of a stop string that text ends with.
static size_t stop_prefix_at_end(const std::string& text, const std::vector<std::string>& stop) {
  size_t hold = 0;
  for (const auto& s : stop)
    for (size_t k = std::min(s.size() - 1, text.size()); k > hold; k--)
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  return hold;
}

void Scheduler::step(Context& ctx, std::vector<std::unique_ptr<Slot>>& running, std::vector<int>& free_seqs) {
  std::vector<int32_t> tokens, seqs;
  for (auto& s : running) {
    if (s->prefilled) {
      tokens.push_back(s->last);
      seqs.push_back(s->seq);
    } else {
      tokens.insert(tokens.end(), s->job->prompt.begin(), s->job->prompt.end());
      seqs.insert(seqs.end(), s->job->prompt.size(), s->seq);
    }
  }
  try {
    model_.decode(ctx, tokens.data(), seqs.data(), (int)tokens.size());
  } catch (const Error& e) {
    for (auto& s : running) {
      finish(*s->job, "error", e.what());
      free_seqs.push_back(s->seq);
    }
    running.clear();
    return;
  }
  const auto now = Clock::now();
  const ModelConfig& c = model_.cfg;
  const double active = ctx.active_params_per_token();
  const int V = c.vocab_size;
  int prompt_tokens = 0, generated = 0;
  // jobs this step ends, finished after its counts are in /metrics (their clients may read it next)
  std::vector<std::tuple<std::shared_ptr<GenerationJob>, std::string, std::string>> ended;
  std::erase_if(running, [&](const std::unique_ptr<Slot>& sp) {
    Slot& s = *sp;
    GenerationJob& job = *s.job;
    const int n = s.prefilled ? 1 : (int)job.prompt.size(), end = ctx.seq_len(s.seq);
    for (int p = end - n; p < end; p++) s.flops += token_flops(c, active, p);
    s.params_sum += active * n;
    s.rows += n;
    if (!s.prefilled) prompt_tokens += n;
    const float* logits = ctx.seq_logits(s.seq);
    std::string reason, error;
    if (first_non_finite(logits, V) != (size_t)V) {
      reason = "error", error = "non-finite logits (diverged or corrupt weights)";
    } else {
      const int Vs = job.opt.vocab_limit > 0 ? std::min(job.opt.vocab_limit, V) : V;
      const int32_t next = sample_token(logits, Vs, job.opt, s.rng);
      if (s.prefilled) metrics_.observe_inter_token(std::chrono::duration<double>(now - s.last_token_at).count());
      else metrics_.observe_first_token(std::chrono::duration<double>(now - job.submitted).count());
      s.prefilled = true;
      s.last_token_at = now;
      s.last = next;
      if (next == job.opt.eos_id) {
        reason = "stop";
      } else {
        generated++;
        s.text += s.stream.push(next);
        if (++s.generated >= job.opt.max_new_tokens || end >= context_len()) s.text += s.stream.flush(), reason = "length";
      }
      // the first stop string ends the text (it may start in text held back from the last step)
      size_t cut = std::string::npos;
      for (const auto& st : job.stop) cut = std::min(cut, s.text.find(st, s.released));
      if (cut != std::string::npos) s.text.resize(cut), reason = "stop";
      s.released = reason.empty() ? s.text.size() - stop_prefix_at_end(s.text, job.stop) : s.text.size();
    }
    {
      std::lock_guard lk(job.mu);
      job.text.assign(s.text, 0, s.released);
      job.completion_tokens = s.generated;
      job.flops = s.flops;
      job.active_params = s.params_sum / s.rows;
    }
    job.cv.notify_all();
    if (reason.empty()) return false;
    ended.emplace_back(s.job, reason, error);
    free_seqs.push_back(s.seq);
    return true;
  });
  metrics_.add_tokens(prompt_tokens, generated, active, token_flops(c, active, 0));
  for (int l = 0; l < c.num_layers; l++)
    if (auto r = model_.ffn(l).routing()) metrics_.add_routing(l, r->config, r->last_tokens_per_expert, r->last_tokens_per_group);
  for (auto& [job, reason, error] : ended) finish(*job, reason, error);
}

}  // namespace mohge
