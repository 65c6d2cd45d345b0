// defines: CompletionRequest, parse_completion_request, chat_prompt, completion_json, Usage — the
// OpenAI request and response bodies of /v1/completions and /v1/chat/completions
// (https://platform.openai.com/docs/api-reference/completions): the fields mohge implements, as
// documented in docs/SERVE.md. Malformed JSON and fields of the wrong type or range throw
// mohge::Error naming the field (the server answers 400 with it).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/generate.h"

namespace mohge {

struct CompletionRequest {
  bool chat = false;
  std::string prompt;              // completions: the prompt; chat: the messages through chat_prompt
  SamplingOptions opt;             // max_tokens (default 16), temperature (1), top_p (1), top_k (0), seed
  bool seeded = false;             // seed given; otherwise the server picks one
  std::vector<std::string> stop;   // up to 4 strings
  bool stream = false;
  bool ignore_eos = false;         // extension (as vLLM's): generate past end-of-text
};

CompletionRequest parse_completion_request(const std::string& body, bool chat);

// The chat template: each message on its own line as "<Role>: <content>" (roles system, user,
// assistant, capitalised), then "Assistant:" for the model to continue. Errors: not an array of
// {role, content} objects with a known role and string content, or empty.
std::string chat_prompt(const nlohmann::json& messages);

struct Usage {
  int prompt_tokens = 0, completion_tokens = 0;
  double activated_params_per_token = 0;  // mean over this request's tokens
  double flops = 0;                       // spent on its prompt and generated tokens
};

// A whole response (chunk = false) or one server-sent event's chunk (chunk = true: the text is
// the new piece; finish_reason empty -> null; usage only with the last chunk, when given).
nlohmann::json completion_json(const CompletionRequest& r, const std::string& id, const std::string& model,
                               const std::string& text, const std::string& finish_reason, const Usage* usage,
                               bool chunk);

}  // namespace mohge
