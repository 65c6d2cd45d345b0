// defines: GenerationJob, Scheduler — continuous batching of generation requests over one Model
// One thread owns one decode Context of max_seqs sequences (slots). Each step it admits queued
// jobs into free slots, then runs one batched Model::decode over the rows of every running job:
// the whole prompt of a job admitted this step (prefill), one new token of every other one
// (decode). Each job samples from its own logits with its own RNG, so its tokens do not depend on
// what else shares the batch. Jobs leave when they finish (end-of-text, max_tokens, a stop string,
// a full context) or are cancelled (the client went away); their slot is free the next step.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "data/tokenizer.h"
#include "eval/generate.h"
#include "model/model.h"
#include "serve/metrics.h"

namespace mohge {

using Clock = std::chrono::steady_clock;

// One request's generation. The request fields are set before submit and then only read; the
// output fields are written by the scheduler thread under mu and signalled through cv.
struct GenerationJob {
  std::vector<int32_t> prompt;     // tokens, non-empty
  SamplingOptions opt;             // max_new_tokens, sampling, seed, eos_id (-1: ignore end-of-text)
  std::vector<std::string> stop;   // generation ends before the first of these strings
  std::atomic<bool> cancelled{false};  // set by the HTTP side when the client goes away

  std::mutex mu;
  std::condition_variable cv;
  std::string text;                // generated text handed out so far (stop strings cut off)
  int completion_tokens = 0;
  double flops = 0;                // spent on this job's rows (prompt and generated tokens)
  double active_params = 0;        // mean activated parameters per token of its rows
  bool done = false;
  std::string finish_reason;       // "stop" | "length" | "cancelled" | "error"
  std::string error;               // when finish_reason == "error"

  Clock::time_point submitted;
};

struct SchedulerOptions {
  int max_seqs = 8;   // sequences decoded together (slots of the KV cache)
  int max_queue = 64; // jobs waiting for a slot; submit refuses beyond
};

class Scheduler {
 public:
  // Starts the scheduler thread. model, tok and metrics must outlive the Scheduler.
  Scheduler(const Model& model, const Tokenizer& tok, Metrics& metrics, const SchedulerOptions& o);
  ~Scheduler();  // cancels what is left and joins

  enum class Submit { ok, queue_full, draining };
  Submit submit(const std::shared_ptr<GenerationJob>& job);
  // Stops admitting new jobs; the queued and running ones continue. Returns when all are done or
  // at deadline, when the rest are cancelled.
  void drain(Clock::time_point deadline);

  int context_len() const;  // tokens a sequence holds: prompt + max_tokens must fit

 private:
  struct Slot;
  void loop();
  // One batched decode of every running job's rows; samples, publishes and retires finished jobs.
  void step(Context& ctx, std::vector<std::unique_ptr<Slot>>& running, std::vector<int>& free_seqs);
  void finish(GenerationJob& job, const std::string& reason, const std::string& error = "");

  const Model& model_;
  const Tokenizer& tok_;
  Metrics& metrics_;
  SchedulerOptions opt_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<GenerationJob>> queue_;
  int running_ = 0;  // jobs holding a slot, as of the last step
  bool draining_ = false, stop_ = false;
  std::atomic<bool> cancel_all_{false};  // drain's deadline passed
  std::thread thread_;
};

}  // namespace mohge
