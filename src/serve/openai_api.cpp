#include "serve/openai_api.h"

#include <chrono>

#include "core/error.h"

namespace mohge {

using nlohmann::json;

// body[key] as T when present and of the JSON type `is`; error naming the field otherwise.
template <class T>
static bool get_field(const json& body, const char* key, T& out, bool (json::*is)() const noexcept, const char* type) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return false;
  MOHGE_CHECK(((*it).*is)(), "'{}' must be {}", key, type);
  out = it->get<T>();
  return true;
}

CompletionRequest parse_completion_request(const std::string& body_text, bool chat) {
  json body;
  try {
    body = json::parse(body_text);
  } catch (const json::parse_error& e) {
    fail("malformed JSON: {}", e.what());
  }
  MOHGE_CHECK(body.is_object(), "the request body must be a JSON object");
  CompletionRequest r;
  r.chat = chat;
  if (chat) {
    MOHGE_CHECK(body.contains("messages"), "'messages' is required");
    r.prompt = chat_prompt(body["messages"]);
  } else {
    MOHGE_CHECK(body.contains("prompt"), "'prompt' is required");
    MOHGE_CHECK(body["prompt"].is_string(), "'prompt' must be a string");
    r.prompt = body["prompt"].get<std::string>();
  }
  r.opt.max_new_tokens = 16;
  r.opt.temperature = 1.0;
  int64_t max_tokens = 16, top_k = 0, n = 1;
  uint64_t seed = 0;
  get_field(body, "max_tokens", max_tokens, &json::is_number_integer, "an integer");
  MOHGE_CHECK(max_tokens >= 1 && max_tokens <= 1 << 30, "'max_tokens' must be >= 1, got {}", max_tokens);
  r.opt.max_new_tokens = (int)max_tokens;
  get_field(body, "temperature", r.opt.temperature, &json::is_number, "a number");
  MOHGE_CHECK(r.opt.temperature >= 0 && r.opt.temperature <= 100, "'temperature' must be in [0, 100]");
  get_field(body, "top_p", r.opt.top_p, &json::is_number, "a number");
  MOHGE_CHECK(r.opt.top_p > 0 && r.opt.top_p <= 1, "'top_p' must be in (0, 1]");
  get_field(body, "top_k", top_k, &json::is_number_integer, "an integer");
  MOHGE_CHECK(top_k >= 0 && top_k <= 1 << 30, "'top_k' must be >= 0");
  r.opt.top_k = (int)top_k;
  if (body.contains("seed") && !body["seed"].is_null()) {
    MOHGE_CHECK(body["seed"].is_number_integer(), "'seed' must be an integer");
    seed = body["seed"].is_number_unsigned() ? body["seed"].get<uint64_t>() : (uint64_t)body["seed"].get<int64_t>();
    r.opt.seed = seed;
    r.seeded = true;
  }
  get_field(body, "n", n, &json::is_number_integer, "an integer");
  MOHGE_CHECK(n == 1, "'n' must be 1 (one choice per request), got {}", n);
  get_field(body, "stream", r.stream, &json::is_boolean, "a boolean");
  get_field(body, "ignore_eos", r.ignore_eos, &json::is_boolean, "a boolean");
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& s = body["stop"];
    if (s.is_string()) r.stop.push_back(s.get<std::string>());
    else {
      MOHGE_CHECK(s.is_array() && s.size() <= 4, "'stop' must be a string or an array of at most 4 strings");
      for (const auto& x : s) {
        MOHGE_CHECK(x.is_string(), "'stop' must be a string or an array of at most 4 strings");
        r.stop.push_back(x.get<std::string>());
      }
    }
    for (const auto& x : r.stop) MOHGE_CHECK(!x.empty(), "'stop' strings must not be empty");
  }
  return r;
}

std::string chat_prompt(const json& messages) {
  MOHGE_CHECK(messages.is_array() && !messages.empty(), "'messages' must be a non-empty array");
  std::string out;
  for (const auto& m : messages) {
    MOHGE_CHECK(m.is_object() && m.contains("role") && m["role"].is_string() && m.contains("content") &&
                    m["content"].is_string(),
                "each message must be an object with string 'role' and 'content'");
    const std::string role = m["role"].get<std::string>();
    MOHGE_CHECK(role == "system" || role == "user" || role == "assistant",
                "message role must be system, user or assistant, got '{}'", shortened(role));
    out += (char)(role[0] - 'a' + 'A') + role.substr(1) + ": " + m["content"].get<std::string>() + "\n";
  }
  return out + "Assistant:";
}

json completion_json(const CompletionRequest& r, const std::string& id, const std::string& model,
                     const std::string& text, const std::string& finish_reason, const Usage* usage, bool chunk) {
  json choice = {{"index", 0}, {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  if (!r.chat) {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  } else if (chunk) {
    choice["delta"] = text.empty() ? json::object() : json{{"content", text}};
  } else {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  }
  const char* object = !r.chat ? "text_completion" : chunk ? "chat.completion.chunk" : "chat.completion";
  const auto created = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  json out = {{"id", id}, {"object", object}, {"created", created}, {"model", model}, {"choices", json::array({choice})}};
  if (usage)
    out["usage"] = {{"prompt_tokens", usage->prompt_tokens},
                    {"completion_tokens", usage->completion_tokens},
                    {"total_tokens", usage->prompt_tokens + usage->completion_tokens},
                    {"activated_params_per_token", usage->activated_params_per_token},
                    {"flops", usage->flops}};
  return out;
}

}  // namespace mohge
