// Tests of `mohge serve` (src/serve) with a real HTTP client against the server process on a free
// loopback port, over a tiny mohge checkpoint made here; and of TextStream (data/text_stream.h),
// the detokenization generate and serve share.
#include <httplib.h>
#include <sentencepiece_trainer.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <thread>

#include "data/text_stream.h"
#include "model/model.h"
#include "model/model_io.h"
#include "serve/openai_api.h"
#include "test_util.h"

using namespace mohge;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string words_text(int docs) {
  static const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "house",
                                "river", "green", "small", "bird", "sings", "every", "morning", "near", "tree"};
  std::mt19937_64 rng(1);
  std::string s;
  for (int d = 0; d < docs; d++) {
    for (int w = 0, n = 8 + (int)(rng() % 20); w < n; w++) s += std::string(w ? " " : "") + words[rng() % 20];
    s += ".\n\n";
  }
  return s;
}

// A tokenizer (byte fallback, vocab 300) and a tiny mohge checkpoint with a 4096-token context.
struct Env : test::CorpusFixture {
  std::string ck;
};
const Env& env() {
  static Env e = [] {
    Env v = test::make_corpus_fixture<Env>(words_text(200), {.tag = "serve"});
    v.ck = *v.dir / "ck";
    fs::create_directories(v.ck);
    Model m(test::tiny_model_config("mohge", 4096));
    m.init_weights(7);
    model_save(v.ck, m);
    fs::copy_file(v.tokenizer, v.ck + "/tokenizer.model");
    return v;
  }();
  return e;
}

// `mohge serve` as a child process on a free port; SIGKILLed by the destructor if still running.
// The constructor returns once the server listens and, unless !wait_ready, answers /health 200.
class ServerProcess {
 public:
  explicit ServerProcess(const std::string& args, const std::string& checkpoint = env().ck, bool wait_ready = true)
      : log_(std::make_unique<test::TmpDir>()) {
    const std::string out = *log_ / "out.txt";
    pid_ = fork();
    if (pid_ == 0) {
      setenv("OMP_NUM_THREADS", "1", 1);
      const std::string cmd = fmt::format("exec {} serve --checkpoint {} --port 0 {} >{} 2>&1",
                                          test::shell_quote(MOHGE_BINARY), test::shell_quote(checkpoint), args,
                                          test::shell_quote(out));
      execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
      _exit(127);
    }
    const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 30000 && port_ == 0; i++) {
      std::smatch m;
      const std::string text = fs::exists(out) ? read_file_text(out) : "";
      if (std::regex_search(text, m, listening)) port_ = std::stoi(m[1]);
      else std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (port_ == 0) ADD_FAILURE() << "the server did not start: " << output();
    if (!wait_ready) return;
    for (int i = 0; i < 600; i++) {
      auto r = client().Get("/health");
      if (r && r->status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "the server did not become ready: " << output();
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c;
  }
  // The exit status (128 + signal when killed by one).
  int wait_exit() {
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  void signal(int sig) const { kill(pid_, sig); }
  int port() const { return port_; }
  std::string output() const { return read_file_text(*log_ / "out.txt"); }

 private:
  std::unique_ptr<test::TmpDir> log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

struct Reply {
  int status = 0;
  json body;
};

Reply post(const ServerProcess& s, const std::string& path, const std::string& body) {
  auto r = s.client().Post(path, body, "application/json");
  if (!r) return {-1, {}};
  return {r->status, json::parse(r->body, nullptr, false)};
}

json completion(const std::string& prompt, uint64_t seed, int max_tokens, double temperature = 0.8) {
  return {{"prompt", prompt}, {"seed", seed}, {"max_tokens", max_tokens}, {"temperature", temperature}};
}

// A streamed request: the data: payloads in order; stop_after > 0 closes the connection after that
// many events.
struct Stream {
  int status = 0;
  std::vector<std::string> events;
};
Stream post_stream(const ServerProcess& s, const std::string& path, json body, int stop_after = 0,
                   const std::function<void()>& on_first = {}) {
  body["stream"] = true;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  Stream out;
  std::string buf;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buf.append(data, n);
    for (size_t e; (e = buf.find("\n\n")) != std::string::npos;) {
      const std::string ev = buf.substr(0, e);
      buf.erase(0, e + 2);
      if (ev.rfind("data: ", 0) != 0) continue;  // comments keep the connection checked
      out.events.push_back(ev.substr(6));
      if (out.events.size() == 1 && on_first) on_first();
      if (stop_after > 0 && (int)out.events.size() >= stop_after) return false;
    }
    return true;
  };
  auto cli = s.client();
  auto r = cli.send(req);
  out.status = r ? r->status : -1;
  return out;
}

// The text of a streamed completion and its last chunk (with finish_reason and usage).
std::pair<std::string, json> stream_text(const Stream& s) {
  std::string text;
  json last;
  for (const auto& e : s.events) {
    if (e == "[DONE]") break;
    last = json::parse(e);
    text += last["choices"][0].value("text", "");
  }
  return {text, last};
}

long metric(const ServerProcess& s, const std::string& line_start) {
  auto r = s.client().Get("/metrics");
  if (!r) return -1;
  std::istringstream in(r->body);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(line_start + " ", 0) == 0) return std::stol(line.substr(line_start.size() + 1));
  return -1;
}

// Every sample of a metric family: its label text ({...}, or "" without labels) and value.
std::vector<std::pair<std::string, double>> metric_samples(const ServerProcess& s, const std::string& name) {
  std::vector<std::pair<std::string, double>> out;
  auto r = s.client().Get("/metrics");
  if (!r) return out;
  std::istringstream in(r->body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name, 0) != 0 || (line[name.size()] != '{' && line[name.size()] != ' ')) continue;
    const size_t sp = line.rfind(' ');
    out.emplace_back(line.substr(name.size(), sp - name.size()), std::stod(line.substr(sp + 1)));
  }
  return out;
}

// Polls a metric until ok(value) holds (5 s at most); its last value. Gauges such as the running
// sequences are updated after the step that answered the request, so they settle a moment later.
long wait_for_metric(const ServerProcess& s, const std::string& line_start, const std::function<bool(long)>& ok) {
  long v = metric(s, line_start);
  for (int i = 0; i < 250 && !ok(v); i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    v = metric(s, line_start);
  }
  return v;
}

}  // namespace

// ------------------------------------------------------------------------------------ TextStream

TEST(TextStream, ByteTokensAreHeldUntilTheCharacterCompletes) {
  const Tokenizer tok = Tokenizer::load(env().tokenizer);
  const std::vector<int32_t> ids = tok.encode("😀abcdefg");
  ASSERT_EQ(tok.id_to_piece(ids[0]), "<0xF0>");  // the emoji is 4 byte tokens in a 300-piece vocabulary
  TextStream ts(tok, {tok.eos_id()});
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(ts.push(id));
  EXPECT_EQ(pieces[0], "");
  EXPECT_EQ(pieces[1], "");
  EXPECT_EQ(pieces[2], "");
  EXPECT_EQ(pieces[3], "😀");
  std::string all;
  for (auto& p : pieces) all += p;
  EXPECT_EQ(all + ts.flush(), "😀abcdefg");
}

TEST(TextStream, AnIncompleteCharacterAtTheEndIsFlushedAsDecodeRendersIt) {
  const Tokenizer tok = Tokenizer::load(env().tokenizer);
  std::vector<int32_t> ids = tok.encode("😀");
  ids.pop_back();
  TextStream ts(tok, {});
  for (int32_t id : ids) EXPECT_EQ(ts.push(id), "");
  EXPECT_EQ(ts.flush(), tok.decode(ids));
}

TEST(TextStream, DummyPrefixTokenizerKeepsTheSpaceOfTheFirstWord) {
  test::TmpDir d;
  std::ofstream(d / "text.txt") << words_text(300) << "Hello world. Hello world.\n";
  const std::string args = fmt::format(
      "--input={} --model_prefix={} --vocab_size=300 --model_type=bpe --byte_fallback=true "
      "--add_dummy_prefix=true --num_threads=1 --minloglevel=2",
      d / "text.txt", d / "llama");
  ASSERT_TRUE(sentencepiece::SentencePieceTrainer::Train(args).ok());
  const Tokenizer tok = Tokenizer::load(d / "llama.model");
  const std::vector<int32_t> cont = tok.encode("world");  // "▁world": the dummy prefix
  ASSERT_EQ(tok.id_to_piece(cont[0]).rfind("▁", 0), 0u);
  EXPECT_EQ(tok.decode(cont), "world");  // the fault: decoded alone, the space is gone
  TextStream ts(tok, tok.encode("Hello"));
  std::string out;
  for (int32_t id : cont) out += ts.push(id);
  EXPECT_EQ(out, " world");
}

// ------------------------------------------------------------------------------------ requests

TEST(OpenAiApi, RequestFieldsAndTheirErrors) {
  CompletionRequest r = parse_completion_request(
      R"({"prompt":"hi","max_tokens":5,"temperature":0,"top_p":0.5,"top_k":3,"seed":9,"stop":["a","b"],"stream":true})",
      false);
  EXPECT_EQ(r.prompt, "hi");
  EXPECT_EQ(r.opt.max_new_tokens, 5);
  EXPECT_EQ(r.opt.temperature, 0);
  EXPECT_EQ(r.opt.top_p, 0.5);
  EXPECT_EQ(r.opt.top_k, 3);
  EXPECT_EQ(r.opt.seed, 9u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.stream);
  EXPECT_ERROR(parse_completion_request("{\"prompt\": ", false), "malformed JSON");
  EXPECT_ERROR(parse_completion_request(R"({"prompt":"hi","max_tokens":"5"})", false), "'max_tokens' must be an integer");
  EXPECT_ERROR(parse_completion_request(R"({"prompt":3})", false), "'prompt' must be a string");
  EXPECT_ERROR(parse_completion_request(R"({"prompt":"x","n":2})", false), "'n' must be 1");
  EXPECT_ERROR(parse_completion_request(R"({"prompt":"x","stop":[1]})", false), "'stop'");
  EXPECT_ERROR(parse_completion_request(R"({"messages":[{"role":"robot","content":"x"}]})", true), "robot");
  EXPECT_EQ(chat_prompt(json::parse(R"([{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}])")),
            "System: Be brief.\nUser: Hi\nAssistant:");
}

// ------------------------------------------------------------------------------------ the server

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new ServerProcess("--max-seqs 8 --queue 64"); }
  static void TearDownTestSuite() { delete server_; }
  static ServerProcess* server_;
};
ServerProcess* Serve::server_ = nullptr;

TEST_F(Serve, ModelsHealthTokenizeDetokenize) {
  auto c = server_->client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(json::parse(m->body)["data"][0]["id"], "ck");
  Reply t = post(*server_, "/tokenize", R"({"content":"the cat sat"})");
  ASSERT_EQ(t.status, 200);
  const Tokenizer tok = Tokenizer::load(env().tokenizer);
  EXPECT_EQ(t.body["tokens"].get<std::vector<int32_t>>(), tok.encode("the cat sat"));
  Reply d = post(*server_, "/detokenize", json{{"tokens", t.body["tokens"]}}.dump());
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(d.body["content"], "the cat sat");
  EXPECT_EQ(post(*server_, "/detokenize", R"({"tokens":[100000]})").status, 400);
}

TEST_F(Serve, CompletionHasTextUsageAndActivatedParameters) {
  Reply r = post(*server_, "/v1/completions", completion("the cat", 1, 8).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body["object"], "text_completion");
  const json& u = r.body["usage"];
  const Tokenizer tok = Tokenizer::load(env().tokenizer);
  EXPECT_EQ(u["prompt_tokens"], tok.encode("the cat").size() + 1);  // + the EOS a text starts after
  EXPECT_GE(u["completion_tokens"].get<int>(), 0);
  EXPECT_LE(u["completion_tokens"].get<int>(), 8);
  EXPECT_GT(u["activated_params_per_token"].get<double>(), 0);
  EXPECT_GE(u["flops"].get<double>(), 2 * u["activated_params_per_token"].get<double>() * u["prompt_tokens"].get<int>());
  Reply chat = post(*server_, "/v1/chat/completions",
                    R"({"messages":[{"role":"user","content":"the cat"}],"max_tokens":4,"seed":2})");
  ASSERT_EQ(chat.status, 200) << chat.body;
  EXPECT_EQ(chat.body["object"], "chat.completion");
  EXPECT_EQ(chat.body["choices"][0]["message"]["role"], "assistant");
}

TEST_F(Serve, ConcurrentRequestsGiveTheSameTokensAsSequential) {
  const int n = 12;
  std::vector<std::string> seq(n), conc(n);
  auto body = [](int i) {
    json b = completion(i % 2 ? "the cat sat" : "a small bird", 100 + i, 12 + i);
    b["ignore_eos"] = true;
    return b.dump();
  };
  for (int i = 0; i < n; i++) {
    Reply r = post(*server_, "/v1/completions", body(i));
    ASSERT_EQ(r.status, 200);
    seq[i] = r.body["choices"][0]["text"];
    EXPECT_EQ(r.body["usage"]["completion_tokens"], 12 + i);
  }
  std::vector<std::thread> th;
  std::vector<int> status(n);
  for (int i = 0; i < n; i++)
    th.emplace_back([&, i] {
      Reply r = post(*server_, "/v1/completions", body(i));
      status[i] = r.status;
      if (r.status == 200) conc[i] = r.body["choices"][0]["text"];
    });
  for (auto& t : th) t.join();
  for (int i = 0; i < n; i++) {
    EXPECT_EQ(status[i], 200);
    EXPECT_EQ(conc[i], seq[i]) << "request " << i;
  }
}

TEST_F(Serve, StreamingGivesTheSameTextAsOneResponse) {
  json b = completion("the dog ran", 5, 20);
  b["ignore_eos"] = true;
  Reply whole = post(*server_, "/v1/completions", b.dump());
  ASSERT_EQ(whole.status, 200);
  Stream s = post_stream(*server_, "/v1/completions", b);
  ASSERT_EQ(s.status, 200);
  ASSERT_FALSE(s.events.empty());
  EXPECT_EQ(s.events.back(), "[DONE]");
  auto [text, last] = stream_text(s);
  EXPECT_EQ(text, whole.body["choices"][0]["text"]);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(last["usage"]["completion_tokens"], 20);
  json chat = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 3}, {"seed", 1}};
  Stream cs = post_stream(*server_, "/v1/chat/completions", chat);
  ASSERT_EQ(cs.status, 200);
  EXPECT_EQ(cs.events.back(), "[DONE]");
  EXPECT_EQ(json::parse(cs.events.front())["object"], "chat.completion.chunk");
}

TEST_F(Serve, StopStringEndsTheText) {
  json b = completion("the cat", 3, 30);
  b["ignore_eos"] = true;
  Reply whole = post(*server_, "/v1/completions", b.dump());
  const std::string text = whole.body["choices"][0]["text"];
  // the stop string: the text's second and third characters (whole UTF-8 sequences)
  std::vector<size_t> starts;
  for (size_t i = 0; i < text.size(); i++)
    if (((unsigned char)text[i] & 0xC0) != 0x80) starts.push_back(i);
  ASSERT_GE(starts.size(), 4u);
  const std::string stop = text.substr(starts[1], starts[3] - starts[1]);
  b["stop"] = stop;
  Reply cut = post(*server_, "/v1/completions", b.dump());
  ASSERT_EQ(cut.status, 200);
  EXPECT_EQ(cut.body["choices"][0]["text"], text.substr(0, text.find(stop)));
  EXPECT_EQ(cut.body["choices"][0]["finish_reason"], "stop");
}

TEST_F(Serve, BadRequestsAre400WithTheReason) {
  Reply r = post(*server_, "/v1/completions", "{\"prompt\": \"x\"");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("malformed JSON"), std::string::npos);
  r = post(*server_, "/v1/completions", R"({"prompt":"x","temperature":"hot"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("'temperature' must be a number"), std::string::npos);
  r = post(*server_, "/v1/completions", R"({"prompt":"the cat","max_tokens":5000})");
  EXPECT_EQ(r.status, 400);
  const size_t prompt_tokens = Tokenizer::load(env().tokenizer).encode("the cat").size() + 1;  // + EOS
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find(fmt::format(
                "the prompt of {} tokens plus max_tokens 5000 exceeds the context of 4096 tokens", prompt_tokens)),
            std::string::npos)
      << r.body;
  r = post(*server_, "/v1/chat/completions", R"({"messages":"hi"})");
  EXPECT_EQ(r.status, 400);
}

// A bounded load test on a server of its own that then drains and exits: exit status 0 also
// means no AddressSanitizer / LeakSanitizer report where mohge is built with them
// (scripts/test.sh runs this test on such a build: build-asan).
TEST(ServeLoad, LoadOf200RequestsFrom16ClientsHasNoErrorAndExitsClean) {
  ServerProcess server("--max-seqs 8 --queue 64");
  std::atomic<int> ok{0}, next{0};
  std::vector<std::thread> th;
  for (int c = 0; c < 16; c++)
    th.emplace_back([&] {
      for (int i; (i = next++) < 200;) {
        json b = completion(i % 3 ? "the cat" : "every morning the bird", i, 1 + i % 16);
        b["stream"] = i % 2 == 0;
        if (i % 2 == 0) {
          Stream s = post_stream(server, "/v1/completions", b);
          if (s.status == 200 && !s.events.empty() && s.events.back() == "[DONE]") ok++;
        } else if (post(server, "/v1/completions", b.dump()).status == 200) {
          ok++;
        }
      }
    });
  for (auto& t : th) t.join();
  EXPECT_EQ(ok, 200);
  EXPECT_EQ(wait_for_metric(server, "mohge_running_sequences", [](long v) { return v == 0; }), 0);
  EXPECT_EQ(wait_for_metric(server, "mohge_queue_depth", [](long v) { return v == 0; }), 0);
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait_exit(), 0) << server.output();
  EXPECT_EQ(server.output().find("Sanitizer"), std::string::npos) << server.output();
}

// One slot, one queue place: long generations (ignore_eos, 4000 tokens) keep both taken.
TEST(ServeLimits, FullQueueIs429AndDisconnectFreesTheSlot) {
  ServerProcess server("--max-seqs 1 --queue 1");
  json b = completion("the cat", 1, 4000);
  b["ignore_eos"] = true;
  std::vector<std::thread> th;
  std::vector<int> status(16);
  for (int i = 0; i < 16; i++) th.emplace_back([&, i] { status[i] = post(server, "/v1/completions", b.dump()).status; });
  for (auto& t : th) t.join();
  const long n429 = std::count(status.begin(), status.end(), 429), n200 = std::count(status.begin(), status.end(), 200);
  EXPECT_GE(n429, 1);
  EXPECT_GE(n200, 2);
  EXPECT_EQ(n429 + n200, 16);
  EXPECT_EQ(metric(server, "mohge_requests_total{outcome=\"queue_full\"}"), n429);

  // the client goes away after the first event: the job is cancelled and its slot is free
  Stream s = post_stream(server, "/v1/completions", b, 1);
  EXPECT_EQ(s.events.size(), 1u);
  EXPECT_EQ(wait_for_metric(server, "mohge_requests_total{outcome=\"cancelled\"}", [](long v) { return v >= 1; }), 1);
  EXPECT_LT(metric(server, "mohge_generation_tokens_total"), (n200 + 1) * 4000);
  EXPECT_EQ(wait_for_metric(server, "mohge_running_sequences", [](long v) { return v == 0; }), 0);
  EXPECT_EQ(post(server, "/v1/completions", completion("the cat", 2, 3).dump()).status, 200);
}

// A port another server holds is an error, not a second server sharing it (SO_REUSEPORT).
TEST(ServeLimits, APortInUseIsOneErrorLine) {
  ServerProcess server("");
  const auto r = test::run_mohge(fmt::format("serve --checkpoint {} --port {}", test::shell_quote(env().ck), server.port()), 20);
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("error: cannot listen on 127.0.0.1:" + std::to_string(server.port())), std::string::npos) << r.err;
  EXPECT_EQ(post(server, "/v1/completions", completion("the cat", 2, 3).dump()).status, 200);
}

// The listening socket queues many connections at once (32 clients connecting together overflowed
// cpp-httplib's backlog of 5: retried SYNs, reset connections): `ss` reports the backlog (Send-Q).
TEST(ServeLimits, TheListenBacklogHoldsManyConnections) {
  ServerProcess server("");
  const auto r = test::run_command(fmt::format("ss -Hltn 'sport = :{}'", server.port()));
  if (r.rc != 0) GTEST_SKIP() << "no ss (iproute2) here: " << r.err;
  std::istringstream in(r.out);
  std::string state;
  long recv_q = -1, send_q = -1;
  in >> state >> recv_q >> send_q;
  EXPECT_EQ(state, "LISTEN") << r.out;
  EXPECT_GE(send_q, 128) << r.out;
}

TEST(ServeLimits, SigtermDuringAStreamFinishesItAndExitsZero) {
  ServerProcess server("--max-seqs 2 --queue 2");
  json b = completion("the cat", 1, 3000);
  b["ignore_eos"] = true;
  Stream s = post_stream(server, "/v1/completions", b, 0, [&] { server.signal(SIGTERM); });
  EXPECT_EQ(s.status, 200);
  ASSERT_FALSE(s.events.empty());
  EXPECT_EQ(s.events.back(), "[DONE]");
  EXPECT_EQ(stream_text(s).second["usage"]["completion_tokens"], 3000);
  EXPECT_EQ(server.wait_exit(), 0) << server.output();
  EXPECT_NE(server.output().find("draining"), std::string::npos);
}

// A non-streaming client that gives up (read timeout, connection closed) cancels its job: the
// server finds the connection and polls it while it waits, as a stream's writes do.
TEST(ServeLimits, ANonStreamingClientThatLeavesIsCancelled) {
  ServerProcess server("--max-seqs 1 --queue 1");
  json b = completion("the cat", 1, 4000);
  b["ignore_eos"] = true;
  {
    httplib::Client c = server.client();
    c.set_read_timeout(0, 100000);
    EXPECT_FALSE(c.Post("/v1/completions", b.dump(), "application/json"));
  }
  EXPECT_EQ(wait_for_metric(server, "mohge_requests_total{outcome=\"cancelled\"}", [](long v) { return v >= 1; }), 1);
  EXPECT_LT(metric(server, "mohge_generation_tokens_total"), 4000);
  EXPECT_EQ(wait_for_metric(server, "mohge_running_sequences", [](long v) { return v == 0; }), 0);
  EXPECT_EQ(post(server, "/v1/completions", completion("the cat", 2, 3).dump()).status, 200);
}

// /metrics counts every row the MoE layer routed: with top-2 routing (one group of 2 selected per
// token) each fed token adds 2 expert rows and 1 group token; shares by width and group are those
// counts over all rows. The tiny mohge model's layer 0 is dense, layer 1 MoE (widths 8 8 16 16).
TEST(ServeMetrics, ExpertAndGroupSharesCountEveryRoutedRow) {
  ServerProcess server("--max-seqs 2 --queue 2");
  json b = completion("the cat", 1, 10);
  b["ignore_eos"] = true;
  Reply r = post(server, "/v1/completions", b.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  // the prompt, then every generated token but the last is fed back
  const double fed = r.body["usage"]["prompt_tokens"].get<int>() + 10 - 1;
  double rows = 0, rows8 = 0, rows16 = 0;
  for (const auto& [labels, v] : metric_samples(server, "mohge_expert_assignments_total")) {
    EXPECT_NE(labels.find("layer=\"1\""), std::string::npos) << labels;
    rows += v;
    (labels.find("width=\"8\"") != std::string::npos ? rows8 : rows16) += v;
  }
  EXPECT_EQ(rows, 2 * fed);
  const auto width = metric_samples(server, "mohge_width_share");
  ASSERT_EQ(width.size(), 2u);
  EXPECT_EQ(width[0].first, "{width=\"8\"}");
  EXPECT_NEAR(width[0].second, rows8 / rows, 1e-9);
  EXPECT_NEAR(width[1].second, rows16 / rows, 1e-9);
  const auto group = metric_samples(server, "mohge_group_share");
  ASSERT_EQ(group.size(), 2u);
  EXPECT_EQ(group[1].first, "{group=\"1\",width=\"16\"}");
  EXPECT_NEAR(group[0].second + group[1].second, 1.0, 1e-9);
  double group_tokens = 0;
  for (const auto& [labels, v] : metric_samples(server, "mohge_group_tokens_total")) group_tokens += v;
  EXPECT_EQ(group_tokens, fed);
}

// The server listens before it loads: /health and completions answer 503 until the model is
// ready. The checkpoint's tokenizer.model is a named pipe: loading blocks in reading it until the
// test writes the tokenizer, so the server is surely still loading when it is asked (a timing-free
// test: a checkpoint loads in ~30 ms, faster than a loaded machine schedules the client).
TEST(ServeLimits, HealthIs503WhileTheModelLoads) {
  test::TmpDir d;
  const std::string ck = d / "ck";
  fs::create_directories(ck);
  for (const auto& f : fs::directory_iterator(env().ck))
    if (f.path().filename() != "tokenizer.model") fs::copy(f.path(), ck + "/" + f.path().filename().string());
  const std::string fifo = ck + "/tokenizer.model";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << strerror(errno);
  ServerProcess server("", ck, false);
  std::vector<int> health;
  for (int i = 0; i < 3; i++) {
    auto h = server.client().Get("/health");
    health.push_back(h ? h->status : -1);
  }
  // ASSERT: a server that is gone (-1) would leave the wait for its open below to time out
  ASSERT_EQ(health, std::vector<int>({503, 503, 503})) << server.output();
  EXPECT_EQ(post(server, "/v1/completions", completion("the cat", 1, 2).dump()).status, 503);
  // the tokenizer into the pipe: a non-blocking open succeeds once the server has it open to read
  int fd = -1;
  for (int i = 0; i < 30000 && fd < 0; i++) {
    fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GE(fd, 0) << "the server never opened its tokenizer: " << server.output();
  fcntl(fd, F_SETFL, 0);  // blocking writes: the pipe holds less than the tokenizer
  // a server that dies mid-read fails a write (EPIPE) rather than killing the test with SIGPIPE
  signal(SIGPIPE, SIG_IGN);
  const std::string bytes = read_file_text(env().tokenizer);
  size_t at = 0;
  while (at < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + at, bytes.size() - at);
    if (n <= 0) break;
    at += (size_t)n;
  }
  const int write_errno = errno;
  close(fd);
  ASSERT_EQ(at, bytes.size()) << "writing the tokenizer: " << strerror(write_errno) << "\n" << server.output();
  int status = 503;  // while it loads; then 200, or -1 from a server that has exited (a load error)
  for (int i = 0; i < 3000 && status == 503; i++) {
    auto h = server.client().Get("/health");
    status = h ? h->status : -1;
    if (status == 503) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(status, 200) << server.output();
  EXPECT_EQ(post(server, "/v1/completions", completion("the cat", 1, 2).dump()).status, 200);
}
