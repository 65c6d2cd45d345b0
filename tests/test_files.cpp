// Every file is untrusted (issue 12): the validation layer of the loaders, each hand-made bad input
// with its outcome — safetensors format rules, non-finite weights and metrics, trainer_state.json,
// tokenizer cross-checks, invalid UTF-8, size limits, errors that name the problem. The fuzz
// harnesses (fuzz/) try the same parsers with generated inputs; docs/RELIABILITY.md has the figures.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/finite.h"
#include "core/huge_pages.h"
#include "core/memory_budget.h"
#include "core/safetensors.h"
#include "core/utf8.h"
#include "data/documents.h"
#include "data/prepared_meta.h"
#include "eval/analyze.h"
#include "eval/eval_loss.h"
#include "eval/generate.h"
#include "eval/score.h"
#include "eval/task_files.h"
#include "model/model_io.h"
#include "model/params.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/trainer_state.h"

namespace fs = std::filesystem;
using namespace mohge;
using test::TmpDir;

namespace {

const bool kOneThread = test::single_threaded_unless_set();

// ------------------------------------------------------------------ safetensors, byte by byte
// A file from a raw JSON header (padded to 8 bytes) and raw data bytes.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string h = header;
  h.append((8 - h.size() % 8) % 8, ' ');
  uint64_t n = h.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + h + data;
}

SafetensorsFile parse_st(const std::string& bytes) {
  return SafetensorsFile::parse(std::vector<char>(bytes.begin(), bytes.end()), "x.safetensors");
}

TEST(Safetensors, ShapeWhoseByteCountOverflowsIsRefused) {
  // 4 · 8589934594 · 9223371998200070153 wraps to 72 in 64-bit arithmetic: it loaded as [2, 9]
  const std::string f = safetensors_bytes(
      R"({"t":{"dtype":"I32","shape":[8589934594,9223371998200070153],"data_offsets":[0,72]}})", std::string(72, '\0'));
  EXPECT_ERROR(parse_st(f), "x.safetensors: tensor 't': shape [8589934594,9223371998200070153] overflows");
}

TEST(Safetensors, DuplicateNamesAreRefused) {
  const std::string f = safetensors_bytes(
      R"({"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"t":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
      "abcd");
  EXPECT_ERROR(parse_st(f), "x.safetensors: tensor 't' appears twice in the header");
}

TEST(Safetensors, OverlappingAndSharedRangesAreRefused) {
  EXPECT_ERROR(parse_st(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                          R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                                          "abcd")),
               "tensor 'b' overlaps another tensor's bytes [2, 4)");
  EXPECT_ERROR(parse_st(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                          R"("b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
                                          "ab")),
               "overlaps another tensor's bytes");
}

TEST(Safetensors, BytesIndexedByNoTensorAreRefused) {
  EXPECT_ERROR(parse_st(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                          R"("b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})",
                                          "abcde")),
               "x.safetensors: bytes [2, 3) before tensor 'b' belong to no tensor");
  EXPECT_ERROR(parse_st(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "abcd")),
               "x.safetensors: the last 2 bytes of the data belong to no tensor");
}

TEST(Safetensors, EntriesWithWrongTypesAreRefusedNamingTheTensor) {
  auto one = [](const std::string& entry, const std::string& data = "abcd") {
    return parse_st(safetensors_bytes("{\"w\":" + entry + "}", data));
  };
  EXPECT_ERROR(one(R"({"dtype":"Q7","shape":[4],"data_offsets":[0,4]})"), "tensor 'w' has unknown dtype 'Q7'");
  EXPECT_ERROR(one(R"({"dtype":"U8","shape":[-4],"data_offsets":[0,4]})"), "tensor 'w': shape entry -4 is not");
  EXPECT_ERROR(one(R"({"dtype":"U8","shape":[4.0],"data_offsets":[0,4]})"), "tensor 'w': shape entry 4.0 is not");
  EXPECT_ERROR(one(R"({"dtype":"U8","shape":"4","data_offsets":[0,4]})"), "tensor 'w': \"shape\" missing");
  EXPECT_ERROR(one(R"({"dtype":"U8","shape":[4],"data_offsets":[0,4,8]})"), "tensor 'w': \"data_offsets\" missing");
  EXPECT_ERROR(one(R"({"dtype":"U8","shape":[4],"data_offsets":[0,9]})"), "data_offsets [0, 9] lie outside the 4-byte");
  EXPECT_ERROR(one(R"({"dtype":"U8","shape":[3],"data_offsets":[0,4]})"), "tensor 'w' has 4 bytes but shape U8 [3] needs 3");
  EXPECT_ERROR(one(R"({"dtype":"U8","shape":[4],"data_offsets":[0,4],"x":1})"), "tensor 'w': unknown key 'x'");
  EXPECT_ERROR(one(R"([1])"), "tensor 'w': entry is not an object");
  EXPECT_ERROR(parse_st(safetensors_bytes(R"({"__metadata__":{"format":1}})", "")), "__metadata__ value of 'format'");
}

TEST(Safetensors, HeaderLengthMustBeSane) {
  std::string f = safetensors_bytes("{}", "");
  f[8] = '[';
  EXPECT_ERROR(parse_st(f), "does not start with '{'");
  uint64_t huge = ~0ull;
  std::memcpy(f.data(), &huge, 8);
  EXPECT_ERROR(parse_st(f), "truncated or corrupt (header length 18446744073709551615");
  EXPECT_ERROR(parse_st("1234"), "not a safetensors file (only 4 bytes)");
}

TEST(Safetensors, ValidFilesLoadWithAnyHeaderLength) {
  // zero-size tensors may share an offset; a header of odd length still gives aligned float data
  for (const std::string pad : {"", " ", "   "}) {
    const float w[2] = {1.5f, -2.0f};
    std::string header = R"({"z":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},)"
                         R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})" + pad;
    uint64_t n = header.size();
    std::string f = std::string(reinterpret_cast<const char*>(&n), 8) + header + std::string((const char*)w, 8);
    auto st = parse_st(f);
    ASSERT_EQ(st.tensors().size(), 2u);
    const float* x = st.f32("w", {2});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(x) % 8, 0u);
    EXPECT_EQ(x[0], 1.5f);
    EXPECT_EQ(x[1], -2.0f);
    EXPECT_EQ(st.get("z").nbytes, 0u);
  }
}

// map: the file's own bytes when its data starts 8-byte aligned (what safetensors_write makes),
// read as load does otherwise; the same tensors and checks either way.
TEST(Safetensors, MapUsesTheFileWhenItsDataIsAligned) {
  for (const std::string pad : {"", " ", "   "}) {
    const float w[2] = {1.5f, -2.0f};
    std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})" + pad;
    uint64_t n = header.size();
    TmpDir d;
    std::ofstream(d / "w.safetensors", std::ios::binary)
        << std::string(reinterpret_cast<const char*>(&n), 8) + header + std::string((const char*)w, 8);
    auto st = SafetensorsFile::map(d / "w.safetensors");
    EXPECT_EQ(st.mapped(), (8 + n) % 8 == 0) << "header of " << n << " bytes";
    const float* x = st.f32("w", {2});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(x) % 8, 0u);
    EXPECT_EQ(x[0], 1.5f);
    EXPECT_EQ(x[1], -2.0f);
  }
  TmpDir d;
  EXPECT_ERROR(SafetensorsFile::map(d / "none.safetensors"), "cannot open");
  std::vector<float> bad(5, 1.0f);
  bad[4] = std::nanf("");
  safetensors_write(d / "nan.safetensors", {{"w", "F32", {5}, bad.data(), bad.size() * 4}});
  auto st = SafetensorsFile::map(d / "nan.safetensors");
  EXPECT_TRUE(st.mapped());
  EXPECT_ERROR(st.f32("w", {5}), "tensor 'w' holds a non-finite value (nan) at flat index 4");
}

// safetensors_write pads its header so the data starts on a 64-byte line of the file, hence of a
// mapping: decode's vector kernels read mapped weights in place (model_load_inference).
TEST(Safetensors, WrittenDataStartsOnACacheLine) {
  const std::vector<float> w(40, 0.5f);
  for (int meta = 0; meta < 70; meta++) {
    TmpDir d;
    safetensors_write(d / "w.safetensors", {{"w", "F32", {40}, w.data(), w.size() * 4}},
                      {{"note", std::string(meta, 'x')}});
    auto st = SafetensorsFile::map(d / "w.safetensors");
    ASSERT_TRUE(st.mapped());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(st.f32("w", {40})) % 64, 0u) << "metadata of " << meta << " bytes";
  }
}

// A file larger than a 2 MiB page, in tensors whose sizes are not multiples of the buffer, is
// written byte for byte (AtomicFile's buffer sets only where writes fall) and maps in place.
TEST(Safetensors, LargeFilesRoundTripThroughTheHugePageBuffer) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<std::vector<float>> ws;
  std::vector<TensorView> views;
  for (int64_t n : {3, 700001, 1, 524288, 33}) {
    ws.emplace_back(n);
    for (float& x : ws.back()) x = nd(rng);
  }
  const char* names[] = {"a", "b", "c", "d", "e"};
  for (size_t i = 0; i < ws.size(); i++)
    views.push_back({names[i], "F32", {(int64_t)ws[i].size()}, ws[i].data(), ws[i].size() * 4});
  TmpDir d;
  safetensors_write(d / "big.safetensors", views);
  auto st = SafetensorsFile::map(d / "big.safetensors");
  ASSERT_TRUE(st.mapped());
  for (size_t i = 0; i < ws.size(); i++) {
    const float* x = st.f32(names[i], {(int64_t)ws[i].size()});
    EXPECT_EQ(std::memcmp(x, ws[i].data(), ws[i].size() * 4), 0) << "tensor " << i;
  }
  size_t data_bytes = 0;
  for (const auto& w : ws) data_bytes += w.size() * 4;
  const size_t data_at = static_cast<const char*>(st.get("a").data) - st.storage().get();
  EXPECT_EQ(fs::file_size(d / "big.safetensors"), data_at + data_bytes);
}

// The 2 MiB-aligned part of a buffer is advised for huge pages (smaps' THPeligible), nothing
// outside the buffer; a buffer holding no whole 2 MiB page, or none at all, is left alone.
TEST(HugePages, AdviseMarksTheWholePagesInsideTheBuffer) {
  std::ifstream mode("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string modes((std::istreambuf_iterator<char>(mode)), {});
  if (modes.find("[never]") != std::string::npos || modes.empty()) GTEST_SKIP() << "no transparent huge pages here";
  // THPeligible of the mapping holding address a (smaps)
  auto eligible = [](const void* a) {
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool in = false;
    while (std::getline(smaps, line)) {
      uintptr_t lo, hi;
      if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2)
        in = lo <= (uintptr_t)a && (uintptr_t)a < hi;
      else if (in && line.rfind("THPeligible:", 0) == 0)
        return line.find('1') != std::string::npos;
    }
    return false;
  };
  const size_t H = kHugePageBytes;
  {  // where smaps does not report an advised mapping eligible (no THPeligible line, THP disabled
     // for this process), there is nothing to see
    char* q = static_cast<char*>(::mmap(nullptr, 4 * H, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(q, MAP_FAILED);
    ::madvise(q, 4 * H, MADV_HUGEPAGE);
    const bool reported = eligible(q + 2 * H);
    ::munmap(q, 4 * H);
    if (!reported) GTEST_SKIP() << "smaps reports no advised mapping as THPeligible here";
  }
  char* p = static_cast<char*>(::mmap(nullptr, 6 * H, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  char* a = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(p) + H - 1) / H * H);  // 2 MiB-aligned
  const bool always = modes.find("[always]") != std::string::npos;
  advise_huge_pages(a + 1, H);  // no whole page inside
  advise_huge_pages(a, 0);
  EXPECT_EQ(eligible(a), always);
  advise_huge_pages(a + 100, 3 * H);  // pages [a + H, a + 3H) are whole inside
  EXPECT_EQ(eligible(a), always);
  EXPECT_TRUE(eligible(a + H));
  EXPECT_TRUE(eligible(a + 3 * H - 1));
  EXPECT_EQ(eligible(a + 3 * H), always);
  ::munmap(p, 6 * H);
  // alloc_huge_pages: a zeroed, writable mapping of its own on a 2 MiB boundary, advised whole
  const size_t n = 3 * H + 100;
  auto* b = static_cast<unsigned char*>(alloc_huge_pages(n));
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % H, 0u);
  EXPECT_TRUE(eligible(b) && eligible(b + n - 1));
  EXPECT_EQ(b[0] | b[n / 2] | b[n - 1], 0);
  b[n - 1] = 7;
  free_huge_pages(b, n);
  EXPECT_EQ(alloc_huge_pages(0), nullptr);
}

TEST(Safetensors, NonFiniteF32TensorsAreRefusedNamingTheIndex) {
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    std::vector<float> w(37, 0.25f);
    w[29] = bad;
    TmpDir d;
    safetensors_write(d / "w.safetensors", {{"w", "F32", {37}, w.data(), w.size() * 4}});
    auto st = SafetensorsFile::load(d / "w.safetensors");
    EXPECT_ERROR(st.f32("w", {37}), "w.safetensors: tensor 'w' holds a non-finite value");
    EXPECT_ERROR(st.f32("w", {37}), "at flat index 29");
  }
}

TEST(Finite, FirstNonFiniteFindsTheFirstBadValue) {
  std::vector<float> x(1000, 1.0f);
  EXPECT_EQ(first_non_finite(x.data(), x.size()), 1000u);
  x[999] = -std::numeric_limits<float>::infinity();
  x[517] = std::nanf("");
  EXPECT_EQ(first_non_finite(x.data(), x.size()), 517u);
  x[517] = std::numeric_limits<float>::max();  // the largest finite value is fine
  EXPECT_EQ(first_non_finite(x.data(), x.size()), 999u);
  EXPECT_EQ(require_finite(2.5, "x"), 2.5);
  EXPECT_ERROR(require_finite(std::nan(""), "the validation loss"), "the validation loss is nan");
}

// ------------------------------------------------------------------ checkpoints
ModelConfig tiny(const std::string& kind) { return test::tiny_model_config(kind, 16); }

struct Checkpoint {
  TmpDir dir{"ckpt"};
  ModelConfig cfg;
  explicit Checkpoint(const std::string& kind = "mohge") : cfg(tiny(kind)) {
    Model m(cfg);
    m.init_weights(3);
    model_save(dir.str(), m);
  }
};

TEST(CheckpointFiles, NanWeightRefusesToLoad) {
  Checkpoint ck;
  {
    auto m = model_load(ck.dir.str());
    m->params.data(m->params.find("model.norm.weight"))[3] = std::nanf("");
    model_save(ck.dir.str(), *m);
  }
  EXPECT_ERROR(model_load(ck.dir.str()), "tensor 'model.norm.weight' holds a non-finite value (nan) at flat index 3");
  // memory-mapped for inference, the weights are checked all the same
  EXPECT_ERROR(model_load_inference(ck.dir.str()), "tensor 'model.norm.weight' holds a non-finite value (nan) at flat index 3");
}

TEST(CheckpointFiles, DirectoryWhereAFileBelongsIsNamed) {
  Checkpoint ck;
  fs::remove(ck.dir / "model.safetensors");
  fs::create_directories(ck.dir / "model.safetensors");
  EXPECT_ERROR(model_load(ck.dir.str()), "model.safetensors is a directory, expected a file");
  EXPECT_ERROR(model_load_inference(ck.dir.str()), "model.safetensors is a directory, expected a file");
  EXPECT_ERROR(read_file_text(ck.dir.str()), "is a directory");
}

// A training checkpoint written by checkpoint_save, for the trainer_state / optimizer cases.
struct TrainingCheckpoint {
  TmpDir out{"run"};
  ModelConfig cfg = tiny("dense");
  std::string dir;
  TrainingCheckpoint() {
    Model m(cfg);
    m.init_weights(1);
    AdamW opt(m.params, {});
    TrainerState st;
    st.step = 6, st.loader = {7, 12}, st.tokens = 1536, st.elapsed_s = 2.5;
    dir = checkpoint_save(out.str(), m, opt, st, "tok", "", 3);
  }
  void load() const {
    Model m(cfg);
    AdamW opt(m.params, {});
    TrainerState st;
    checkpoint_load_training(dir, m, opt, st);
  }
  void write_state(const std::string& text) const { write_file_atomic(dir + "/trainer_state.json", text); }
};

TEST(TrainerStateFile, ValidStateRoundTrips) {
  TrainingCheckpoint ck;
  Model m(ck.cfg);
  AdamW opt(m.params, {});
  TrainerState st;
  checkpoint_load_training(ck.dir, m, opt, st);
  EXPECT_EQ(st.step, 6);
  EXPECT_EQ(st.loader.seed, 7u);
  EXPECT_EQ(st.loader.batches, 12u);
  EXPECT_EQ(st.tokens, 1536);
  EXPECT_EQ(st.elapsed_s, 2.5);
}

TEST(TrainerStateFile, BadValuesAreRefused) {
  TrainingCheckpoint ck;
  const std::string ok = R"("loader_seed": 7, "loader_batches": 12, "tokens": 1536.0, "elapsed_s": 2.5)";
  const std::pair<std::string, std::string> cases[] = {
      {R"({"step": 1000000000000000, )" + ok + "}", "step 1000000000000000 exceeds the largest train.steps"},
      {R"({"step": -6, )" + ok + "}", "\"step\" must be a non-negative integer"},
      {R"({"step": 6.5, )" + ok + "}", "\"step\" must be a non-negative integer"},
      {R"({"step": "6", )" + ok + "}", "\"step\" must be a non-negative integer"},
      {R"({"step": 6, "loader_seed": 7, "loader_batches": -1, "tokens": 0, "elapsed_s": 0})",
       "\"loader_batches\" must be a non-negative integer"},
      {R"({"step": 6, "loader_seed": 7, "loader_batches": 12884901889, "tokens": 0, "elapsed_s": 0})",
       "12884901889 loader batches for 6 steps: a step draws at most 2^31"},
      {R"({"step": 6, "loader_seed": 7, "loader_batches": 12, "tokens": -1, "elapsed_s": 0})",
       "\"tokens\" must be finite and >= 0"},
      {R"({"step": 6, "loader_seed": 7, "loader_batches": 12, "elapsed_s": 0})", "missing \"tokens\""},
      {R"([6])", "not a JSON object"},
      {R"({"step": 6,)", "not valid JSON"},
      {R"({"step": 8, )" + ok + "}", "step 8 does not match the checkpoint directory step_00000006"},
  };
  for (const auto& [text, message] : cases) {
    ck.write_state(text);
    EXPECT_ERROR(ck.load(), message);
    EXPECT_ERROR(ck.load(), "trainer_state.json");
  }
}

TEST(TrainerStateFile, NanOptimizerMomentRefusesToLoad) {
  TrainingCheckpoint ck;
  const float nan = std::nanf("");
  auto f = SafetensorsFile::load(ck.dir + "/optimizer.safetensors");
  std::vector<TensorView> ts = f.tensors();
  std::vector<std::vector<char>> copies;
  for (auto& t : ts) {
    copies.emplace_back((const char*)t.data, (const char*)t.data + t.nbytes);
    t.data = copies.back().data();
    if (t.name == "v.model.norm.weight") std::memcpy(copies.back().data(), &nan, 4);
  }
  safetensors_write(ck.dir + "/optimizer.safetensors", ts);
  EXPECT_ERROR(ck.load(), "tensor 'v.model.norm.weight' holds a non-finite value (nan) at flat index 0");
}

// ------------------------------------------------------------------ non-finite results
TEST(NonFiniteResults, LossScoresAndGenerationAreErrors) {
  ModelConfig cfg = tiny("dense");
  Model m(cfg);
  m.init_weights(2);
  m.params.data(m.params.find("model.norm.weight"))[0] = std::nanf("");  // as a diverged run would have
  TmpDir d;
  {
    ShardWriter w(d / "val.bin", 320);
    std::vector<int32_t> toks(200);
    for (size_t i = 0; i < toks.size(); i++) toks[i] = (int32_t)(i * 7 % 320);
    w.append(toks);
    w.finish();
  }
  DataLoader loader(d / "val.bin", 2, 16, 0);
  EXPECT_ERROR(evaluate_loss(m, loader, 0), "the validation loss is nan");
  EXPECT_ERROR(score_continuations(m, {{{1, 2}, {3, 4}}}, 1), "the log-likelihood of scored sequence 0 is nan");
  SamplingOptions o;
  o.temperature = 0;
  EXPECT_ERROR(generate(m, {1, 2, 3}, o), "generate: non-finite logits at position 3");
}

// ------------------------------------------------------------------ sizes
TEST(Sizes, GenerateClampsMaxTokensToTheContext) {
  Model m(tiny("dense"));
  m.init_weights(5);
  SamplingOptions o;
  o.temperature = 0;
  o.max_new_tokens = INT_MAX;  // was: prompt + INT_MAX wrapped negative, "vector larger than max_size()"
  auto out = generate(m, {1, 2, 3}, o);
  EXPECT_EQ(out.size(), 16u - 3u + 1u);  // the last token is sampled at position 16
}

TEST(Sizes, AnalyzeRefusesMoreDevicesThanExperts) {
  Checkpoint ck("mohge");
  AnalyzeOptions o;
  o.checkpoint = ck.dir.str();
  o.data = ck.dir / "nope.bin";
  o.devices = 1000000000;
  EXPECT_ERROR(analyze_checkpoint(o), "analyze: --devices 1000000000 exceeds the model's 4 experts");
}

TEST(Sizes, AModelLargerThanMemoryIsRefusedBeforeAllocation) {
  ASSERT_GT(physical_memory_bytes(), 0u);
  ParamTable t(mohge::cpu_backend());
  t.add("w", {1 << 20, 1 << 20}, ParamInit::normal, 0.02f, true);  // 2^40 floats: 8.8 TB with gradients
  EXPECT_ERROR(t.allocate(), "a model of 1099511627776 parameters (fp32 weights and gradients) needs 8796.1 GB");
  EXPECT_ERROR(require_memory(physical_memory_bytes() + 1, "this"), "this needs");
  require_memory(physical_memory_bytes() / 2, "half the memory");  // fits: no error
}

// ------------------------------------------------------------------ UTF-8
TEST(Utf8, FirstInvalidFindsEachKindOfBadSequence) {
  EXPECT_EQ(utf8_first_invalid("plain ascii text, long enough for the 8-byte path"), std::string::npos);
  EXPECT_EQ(utf8_first_invalid("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), std::string::npos);  // é € 😀
  EXPECT_EQ(utf8_first_invalid("caf\xE9"), 3u);                     // Latin-1 é
  EXPECT_EQ(utf8_first_invalid("ab\xC0\xAF"), 2u);                  // overlong '/'
  EXPECT_EQ(utf8_first_invalid("abcdefghij\xED\xA0\x80"), 10u);     // surrogate U+D800
  EXPECT_EQ(utf8_first_invalid("\xF4\x90\x80\x80"), 0u);            // > U+10FFFF
  EXPECT_EQ(utf8_first_invalid("ok\xF0\x9F\x98"), 2u);              // truncated at the end
  EXPECT_EQ(utf8_first_invalid("\x80"), 0u);                        // lone continuation byte
}

TEST(Utf8, ReplacementFollowsMaximalSubparts) {
  EXPECT_EQ(utf8_replace_invalid("caf\xE9!"), "caf\xEF\xBF\xBD!");
  EXPECT_EQ(utf8_replace_invalid("\xF0\x9F\x98x"), "\xEF\xBF\xBDx");                    // one U+FFFD for 3 bytes
  EXPECT_EQ(utf8_replace_invalid("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");              // C0 never starts one
  EXPECT_EQ(utf8_replace_invalid("valid \xE2\x82\xAC"), "valid \xE2\x82\xAC");
}

TEST(Utf8, DocumentReaderNamesFileLineAndByteOffset) {
  std::istringstream in("first line\nsecond caf\xE9 line\n");
  DocumentReader r(in, "corpus.txt");
  std::string doc;
  EXPECT_ERROR(r.next(doc), "corpus.txt:2: invalid UTF-8 at byte offset 21 (0xE9 0x20 0x6C 0x69)");
  std::istringstream in2("first line\nsecond caf\xE9 line\n");
  DocumentReader r2(in2, "corpus.txt", InvalidUtf8::replace);
  ASSERT_TRUE(r2.next(doc));
  EXPECT_EQ(doc, "first line\nsecond caf\xEF\xBF\xBD line");
}

std::string sample_text(int docs) {
  static const char* words[] = {"river", "stone", "light", "paper", "garden", "window", "music", "winter",
                                "table", "bright", "quiet", "slowly", "carries", "finds", "green", "house"};
  std::mt19937_64 rng(11);
  std::string out;
  for (int d = 0; d < docs; d++) {
    for (int w = 0; w < 40; w++) out += std::string(w ? " " : "") + words[rng() % 16];
    out += ".\n\n";
  }
  return out;
}

const test::CorpusFixture& corpus() {
  static const test::CorpusFixture c = test::make_corpus_fixture(sample_text(200), {.val_fraction = 0.1, .tag = "files"});
  return c;
}

TEST(Utf8, DataPrepareAndTokenizerTrainRefuseLatin1UnlessAskedToReplace) {
  TmpDir d;
  std::ofstream(d / "latin1.txt") << "A first document.\n\nUn caf\xE9 cr\xE8me.\n";
  const Tokenizer tok = Tokenizer::load(corpus().tokenizer);
  EXPECT_ERROR(data_prepare({d / "latin1.txt"}, tok, d / "out"), "latin1.txt:3: invalid UTF-8 at byte offset 25");
  EXPECT_FALSE(fs::exists(d / "out/train.bin"));
  data_prepare({d / "latin1.txt"}, tok, d / "out", 0.0, 1, false, InvalidUtf8::replace);
  EXPECT_EQ(prepared_meta_read(d / "out/meta.json").invalid_utf8, InvalidUtf8::replace);
  TokenizerTrainOptions opt;
  opt.vocab_size = 300;
  opt.num_threads = 1;
  EXPECT_ERROR(tokenizer_train({d / "latin1.txt"}, d / "tok", opt), "latin1.txt:3: invalid UTF-8 at byte offset 25");
}

TEST(Utf8, EvalFilesRefuseInvalidBytesNamingTheLine) {
  TmpDir d;
  std::ofstream(d / "mc.jsonl") << "{\"context\": \"a\", \"choices\": [\" b\", \" c\"], \"label\": 0}\n"
                                << "{\"context\": \"caf\xE9\", \"choices\": [\" b\", \" c\"], \"label\": 1}\n";
  EXPECT_ERROR(load_mc_jsonl(d / "mc.jsonl"), "mc.jsonl:2: invalid UTF-8 at byte offset 70");
  auto items = load_mc_jsonl(d / "mc.jsonl", InvalidUtf8::replace);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1].context, "caf\xEF\xBF\xBD");
}

// ------------------------------------------------------------------ long lines
TEST(LongLines, EncodingInPiecesIsExactAtNewlinesAndRoundTrips) {
  const Tokenizer tok = Tokenizer::load(corpus().tokenizer);
  std::string text;
  std::vector<int32_t> by_line;
  const std::string line = "the quiet river finds a green stone in the garden window";
  while (text.size() < 3 * kEncodePieceBytes) {
    text += line + "\n";
    auto ids = tok.encode(line + "\n");
    by_line.insert(by_line.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(tok.encode(text), by_line);  // cut after newlines: identical to encoding line by line
  std::string one_line;
  while (one_line.size() < 3 * kEncodePieceBytes) one_line += "stone\xE2\x82\xAC";  // no space, no newline
  EXPECT_EQ(tok.decode(tok.encode(one_line)), one_line);
}

// ------------------------------------------------------------------ tokenizer cross-checks
TEST(TokenizerChecks, ShardFromAnotherTokenizerIsRefused) {
  const auto& c = corpus();
  const Tokenizer tok = Tokenizer::load(c.tokenizer);
  TokenShard shard(c.data_dir + "/train.bin");
  check_tokenizer_matches_shard(tok, c.tokenizer, shard);  // the right one passes
  // same size, other content: the checksum in meta.json tells them apart
  auto meta = nlohmann::json::parse(read_file_text(c.data_dir + "/meta.json"));
  const std::string saved = meta.dump();
  meta["tokenizer"]["fnv1a64"] = "0123456789abcdef";
  write_file_atomic(c.data_dir + "/meta.json", meta.dump());
  EXPECT_ERROR(check_tokenizer_matches_shard(tok, c.tokenizer, shard), "is not the tokenizer");
  EXPECT_ERROR(check_tokenizer_matches_shard(tok, c.tokenizer, shard), "fnv1a64 0123456789abcdef");
  write_file_atomic(c.data_dir + "/meta.json", saved);
  // a vocabulary of another size (a 512-token tokenizer on 8192-token shards)
  TmpDir d;
  {
    ShardWriter w(d / "other.bin", 8192);
    w.append(std::vector<int32_t>{1, 2, 3});
    w.finish();
  }
  EXPECT_ERROR(check_tokenizer_matches_shard(tok, c.tokenizer, TokenShard(d / "other.bin")),
               "was tokenized with a 8192-id vocabulary");
  EXPECT_ERROR(check_tokenizer_fits_model(tok, "tok.model", 100), "tok.model has 300 ids, more than the model's vocab_size 100");
}

TEST(TokenizerChecks, MetaJsonIsValidated) {
  auto meta = nlohmann::json::parse(read_file_text(corpus().data_dir + "/meta.json"));
  EXPECT_EQ(prepared_meta_parse(meta.dump(), "m").tokenizer_fnv1a64, meta["tokenizer"]["fnv1a64"].get<std::string>());
  auto bad = meta;
  bad["val_fraction"] = 1.5;
  EXPECT_ERROR(prepared_meta_parse(bad.dump(), "m"), "m: corrupt meta.json (\"val_fraction\" outside [0, 1))");
  bad = meta;
  bad["tokenizer"]["fnv1a64"] = "xyz";
  EXPECT_ERROR(prepared_meta_parse(bad.dump(), "m"), "not 16 lowercase hex digits");
  bad = meta;
  bad["seed"] = -1;
  EXPECT_ERROR(prepared_meta_parse(bad.dump(), "m"), "\"seed\" missing or not a non-negative integer");
}

// ------------------------------------------------------------------ the command line
TEST(Cli, UnknownCommandIsNamed) {
  auto r = test::run_mohge("frobnicate");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("error: unknown command 'frobnicate'"), std::string::npos) << r.err;
  r = test::run_mohge("data frob");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("error: unknown command 'frob' (commands: fetch, prepare)"), std::string::npos) << r.err;
}

TEST(Cli, InvalidPromptIsRefusedBeforeAnythingLoads) {
  auto r = test::run_mohge("generate --checkpoint /nonexistent --prompt " + test::shell_quote("caf\xE9"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("error: --prompt:1: invalid UTF-8 at byte offset 3"), std::string::npos) << r.err;
}

}  // namespace
