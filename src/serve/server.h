// defines: ServeOptions, serve — the OpenAI-compatible HTTP server (`mohge serve`, docs/SERVE.md)
// On cpp-httplib (Debian's libcpp-httplib-dev, what llama.cpp's server uses), loaded as a module
// (serve/http_server.h) so that no other command maps it and OpenSSL: it listens first
// (GET /health answers 503 while the checkpoint loads), then serves POST /v1/completions and
// /v1/chat/completions (JSON, or server-sent events with stream: true), GET /v1/models, /health,
// /metrics, POST /tokenize and /detokenize. Generation goes through one Scheduler (continuous
// batching). SIGINT / SIGTERM drain: new requests get 503, queued and running ones finish until
// the drain deadline (then they are cancelled), and serve returns.
#pragma once
#include <functional>
#include <string>

namespace mohge {

struct ServeOptions {
  std::string checkpoint;  // checkpoint or run directory, with tokenizer.model
  std::string host = "127.0.0.1";
  int port = 8080;         // 0: any free port (printed)
  int max_seqs = 8;        // sequences decoded together
  int queue = 64;          // requests waiting beyond the free slots; more get 429
  double drain_seconds = 30;
  std::string weights_dtype;  // "fp32" | "bf16" | "": the checkpoint's (model_load_inference)
};

// Blocks until a signal has drained the server. Prints "listening on http://HOST:PORT" (stdout)
// once the socket is bound, and "ready" once the model is loaded. Errors: the address cannot be
// bound, the checkpoint does not load (mohge::Error).
void serve(const ServeOptions& o);

}  // namespace mohge
