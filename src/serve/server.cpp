#include "serve/server.h"

#include <csignal>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "core/signals.h"
#include "eval/inference_checkpoint.h"
#include "serve/http_server.h"
#include "serve/openai_api.h"
#include "serve/peer_socket.h"
#include "serve/scheduler.h"

namespace mohge {

using nlohmann::json;

namespace {

// What the handlers share; model, tok and scheduler are set once, before ready.
struct State {
  std::atomic<bool> ready{false};
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Scheduler> scheduler;
  Metrics metrics;
  std::string model_name;
  std::atomic<long> next_id{1};
  std::atomic<int> in_flight{0};  // completion requests whose response is not yet written
  std::mutex seed_mu;
  std::mt19937_64 seed_rng{std::random_device{}()};
};

// Generated text is valid UTF-8 (the tokenizer's decode replaces invalid bytes); replace, never
// throw, should a piece not be.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(HttpResponse& res, int status, const json& body) {
  res.status = status;
  res.body = dump(body);
  res.content_type = "application/json";
}

void send_error(HttpResponse& res, int status, const std::string& message) {
  const char* type = status == 429 ? "rate_limit_error" : status >= 500 ? "server_error" : "invalid_request_error";
  send_json(res, status, {{"error", {{"message", message}, {"type", type}, {"code", status}}}});
}

// Refuses a request while the model loads; true when it may go on.
bool require_ready(State& st, HttpResponse& res) {
  if (st.ready) return true;
  st.metrics.count_request("unavailable");
  send_error(res, 503, "the model is loading");
  return false;
}

// Counts a completion request in flight for as long as it lives: the handler's scope, or the
// stream's content provider (the server destroys it after the last write). Draining waits for none.
struct InFlight {
  explicit InFlight(State& s) : st(s) { st.in_flight++; }
  ~InFlight() { st.in_flight--; }
  State& st;
};

Usage usage_of(const GenerationJob& job) {
  return {(int)job.prompt.size(), job.completion_tokens, job.active_params, job.flops};
}

void handle_completion(State& st, const HttpRequest& req, HttpResponse& res, bool chat) {
  if (!require_ready(st, res)) return;
  auto in_flight = std::make_shared<InFlight>(st);
  auto job = std::make_shared<GenerationJob>();
  CompletionRequest r;
  try {
    r = parse_completion_request(req.body, chat);
    job->prompt = st.tok->encode(r.prompt);
    // as in generate: training data separates documents by EOS, so a text starts after one
    if (st.tok->eos_id() >= 0) job->prompt.insert(job->prompt.begin(), st.tok->eos_id());
    MOHGE_CHECK(!job->prompt.empty(), "the prompt is empty");
    const int ctx = st.scheduler->context_len();
    MOHGE_CHECK((int64_t)job->prompt.size() + r.opt.max_new_tokens <= ctx,
                "the prompt of {} tokens plus max_tokens {} exceeds the context of {} tokens", job->prompt.size(),
                r.opt.max_new_tokens, ctx);
  } catch (const Error& e) {
    st.metrics.count_request("bad_request");
    return send_error(res, 400, e.what());
  }
  job->opt = r.opt;
  job->opt.eos_id = r.ignore_eos ? -1 : st.tok->eos_id();
  job->opt.vocab_limit = st.tok->vocab_size();
  if (!r.seeded) {
    std::lock_guard lk(st.seed_mu);
    job->opt.seed = st.seed_rng();
  }
  job->stop = r.stop;
  switch (st.scheduler->submit(job)) {
    case Scheduler::Submit::ok: break;
    case Scheduler::Submit::queue_full:
      st.metrics.count_request("queue_full");
      return send_error(res, 429, "the queue is full; retry later");
    case Scheduler::Submit::draining:
      st.metrics.count_request("unavailable");
      return send_error(res, 503, "the server is shutting down");
  }
  const std::string id = fmt::format("{}-{}", chat ? "chatcmpl" : "cmpl", st.next_id++);
  if (!r.stream) {
    // a client that goes away cancels its job (in the queue, prefill or decode), as a stream's does
    const PeerSocket peer(req.remote_addr, req.remote_port, req.local_port);
    std::unique_lock lk(job->mu);
    while (!job->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return job->done; }))
      if (peer.closed()) job->cancelled = true;
    if (job->finish_reason == "error") return send_error(res, 500, job->error);
    const Usage u = usage_of(*job);
    return send_json(res, 200, completion_json(r, id, st.model_name, job->text, job->finish_reason, &u, false));
  }
  // Server-sent events: one chunk per new piece of text, the last with finish_reason and usage,
  // then [DONE]. While there is nothing to send, a comment line every 100 ms: writing is how a
  // closed connection shows, and the job is cancelled then (in the queue, prefill or decode).
  auto sent = std::make_shared<size_t>(0);
  res.headers.emplace_back("Cache-Control", "no-cache");
  res.content_type = "text/event-stream";
  res.stream = [&st, job, r, id, sent, in_flight](HttpSink& sink) {
    std::unique_lock lk(job->mu);
    job->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return job->done || job->text.size() > *sent; });
    const std::string piece = job->text.substr(*sent);
    *sent = job->text.size();
    const bool done = job->done;
    const std::string reason = job->finish_reason, error = job->error;
    const Usage u = usage_of(*job);
    lk.unlock();
    std::string out;
    if (!piece.empty())
      out += "data: " + dump(completion_json(r, id, st.model_name, piece, "", nullptr, true)) + "\n\n";
    if (done && reason == "error")
      out += "data: " + dump({{"error", {{"message", error}, {"type", "server_error"}, {"code", 500}}}}) + "\n\n";
    else if (done)
      out += "data: " + dump(completion_json(r, id, st.model_name, "", reason, &u, true)) + "\n\n";
    if (done) out += "data: [DONE]\n\n";
    if (out.empty()) out = ": waiting\n\n";
    if (!sink.write(out)) {
      job->cancelled = true;
      return false;
    }
    if (done) sink.done();
    return true;
  };
  res.stream_end = [job](bool completed) {
    if (!completed) job->cancelled = true;  // the connection ended before the last event
  };
}

void handle_tokenize(State& st, const HttpRequest& req, HttpResponse& res) {
  if (!require_ready(st, res)) return;
  try {
    json body = json::parse(req.body, nullptr, false);
    MOHGE_CHECK(body.is_object() && body.contains("content") && body["content"].is_string(),
                "the body must be a JSON object with a string 'content'");
    send_json(res, 200, {{"tokens", st.tok->encode(body["content"].get<std::string>())}});
  } catch (const Error& e) {
    send_error(res, 400, e.what());
  }
}

void handle_detokenize(State& st, const HttpRequest& req, HttpResponse& res) {
  if (!require_ready(st, res)) return;
  try {
    json body = json::parse(req.body, nullptr, false);
    MOHGE_CHECK(body.is_object() && body.contains("tokens") && body["tokens"].is_array(),
                "the body must be a JSON object with an array 'tokens'");
    std::vector<int32_t> ids;
    for (const auto& t : body["tokens"]) {
      MOHGE_CHECK(t.is_number_integer() && t.get<int64_t>() >= 0 && t.get<int64_t>() < st.tok->vocab_size(),
                  "'tokens' must hold integers in [0, {})", st.tok->vocab_size());
      ids.push_back(t.get<int32_t>());
    }
    send_json(res, 200, {{"content", st.tok->decode(ids)}});
  } catch (const Error& e) {
    send_error(res, 400, e.what());
  }
}

}  // namespace

void serve(const ServeOptions& o) {
  MOHGE_CHECK(o.port >= 0 && o.port <= 65535, "--port {} out of range [0, 65535]", o.port);
  MOHGE_CHECK(o.max_seqs >= 1 && o.max_seqs <= 4096, "--max-seqs {} out of range [1, 4096]", o.max_seqs);
  MOHGE_CHECK(o.queue >= 0 && o.queue <= 1 << 16, "--queue {} out of range [0, 65536]", o.queue);
  std::signal(SIGPIPE, SIG_IGN);  // a client that went away is a failed write, not the end of the server
  InterruptScope interrupt;
  State st;
  st.model_name = std::filesystem::path(o.checkpoint).lexically_normal().filename().string();
  if (st.model_name.empty()) st.model_name = std::filesystem::path(o.checkpoint).lexically_normal().parent_path().filename().string();

  // one thread per open connection: every slot and queue place can be waited on at once
  std::unique_ptr<HttpServer> svr = http_server_open((size_t)o.max_seqs + (size_t)o.queue + 4);
  svr->route("POST", "/v1/completions", [&](const auto& req, auto& res) { handle_completion(st, req, res, false); });
  svr->route("POST", "/v1/chat/completions", [&](const auto& req, auto& res) { handle_completion(st, req, res, true); });
  svr->route("POST", "/tokenize", [&](const auto& req, auto& res) { handle_tokenize(st, req, res); });
  svr->route("POST", "/detokenize", [&](const auto& req, auto& res) { handle_detokenize(st, req, res); });
  svr->route("GET", "/v1/models", [&](const auto&, auto& res) {
    send_json(res, 200, {{"object", "list"},
                         {"data", json::array({{{"id", st.model_name}, {"object", "model"}, {"owned_by", "mohge"}}})}});
  });
  svr->route("GET", "/health", [&](const auto&, auto& res) {
    if (st.ready) send_json(res, 200, {{"status", "ok"}});
    else send_json(res, 503, {{"status", "loading"}});
  });
  svr->route("GET", "/metrics", [&](const auto&, auto& res) {
    res.body = st.metrics.render();
    res.content_type = "text/plain; version=0.0.4";
  });

  const int port = svr->bind(o.host, o.port);
  MOHGE_CHECK(port > 0, "cannot listen on {}:{} (address in use, or not an address of this machine)", o.host, o.port);
  fmt::print("mohge serve: listening on http://{}:{}\n", o.host, port);
  std::fflush(stdout);
  std::thread listener([&] { svr->listen(); });
  auto stop_listener = [&] {
    svr->stop();
    listener.join();
  };
  try {
    InferenceCheckpoint ck = open_inference_checkpoint(o.checkpoint, cpu_backend(), o.weights_dtype);
    st.model = std::move(ck.model);
    st.tok = std::make_unique<Tokenizer>(std::move(ck.tok));
    st.scheduler = std::make_unique<Scheduler>(*st.model, *st.tok, st.metrics, SchedulerOptions{o.max_seqs, o.queue});
  } catch (...) {
    stop_listener();
    throw;
  }
  st.ready = true;
  fmt::print("mohge serve: ready ({}, context {} tokens, {} sequences)\n", st.model_name,
             st.scheduler->context_len(), o.max_seqs);
  std::fflush(stdout);
  while (!interrupt.signal()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  fmt::print(stderr, "mohge serve: {}: draining (up to {} s)\n", signal_name(interrupt.signal()), o.drain_seconds);
  st.scheduler->drain(Clock::now() + std::chrono::milliseconds((int64_t)(o.drain_seconds * 1000)));
  // the server stops writing streams once stopped: let them write their last events first
  for (int i = 0; i < 500 && st.in_flight > 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  stop_listener();
  st.scheduler.reset();
  fmt::print(stderr, "mohge serve: stopped\n");
}

}  // namespace mohge
