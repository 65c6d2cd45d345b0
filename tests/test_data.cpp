// defines: tests of src/data — document format, token shards (round trip and every corruption the
// reader must reject), tokenizer training/loading, data_prepare (counts, split, determinism) and the
// data loader (determinism, resume, eval coverage), plus the corpus text cleaners.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/corpus.h"
#include "data/dataloader.h"
#include "data/documents.h"
#include "data/prepare.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace mohge;

namespace {

using test::TmpDir;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_shard(const std::string& path, int64_t vocab, const std::vector<int32_t>& toks) {
  ShardWriter w(path, vocab);
  // two appends, to exercise streaming
  size_t half = toks.size() / 2;
  w.append(toks.data(), half);
  w.append(toks.data() + half, toks.size() - half);
  w.finish();
}

void patch(const std::string& path, size_t offset, const void* data, size_t n) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}

std::vector<int32_t> all_tokens(const TokenShard& s) {
  std::vector<int32_t> v(s.size());
  if (!v.empty()) s.read(0, v.size(), v.data());
  return v;
}

// ------------------------------------------------------------------------------------------------
// shards

TEST(Shards, RoundTripUint16) {
  TmpDir dir;
  std::mt19937 rng(1);
  std::vector<int32_t> toks(10007);
  for (auto& t : toks) t = static_cast<int32_t>(rng() % 65536);
  toks[5] = 65535;  // the largest id a uint16 shard holds
  write_shard(dir / "a.bin", 65536, toks);
  EXPECT_EQ(fs::file_size(dir / "a.bin"), 64 + toks.size() * 2);
  EXPECT_FALSE(fs::exists(dir / "a.bin.tmp"));
  std::string raw = read_bytes(dir / "a.bin");
  EXPECT_EQ(raw.substr(0, 8), "MOHGETOK");

  TokenShard s(dir / "a.bin");
  EXPECT_EQ(s.dtype_bytes(), 2);
  EXPECT_EQ(s.vocab_size(), 65536);
  ASSERT_EQ(s.size(), toks.size());
  EXPECT_EQ(all_tokens(s), toks);
  EXPECT_EQ(s[5], 65535);
  std::vector<int32_t> part(3);
  s.read(100, 3, part.data());
  EXPECT_EQ(part, std::vector<int32_t>(toks.begin() + 100, toks.begin() + 103));
  EXPECT_ERROR(s.read(toks.size() - 2, 3, part.data()), "past its");
}

TEST(Shards, RoundTripUint32) {
  TmpDir dir;
  std::vector<int32_t> toks = {0, 1, 65535, 65536, 70000, 99999, 12345};
  write_shard(dir / "b.bin", 100000, toks);
  EXPECT_EQ(fs::file_size(dir / "b.bin"), 64 + toks.size() * 4);
  TokenShard s(dir / "b.bin");
  EXPECT_EQ(s.dtype_bytes(), 4);
  EXPECT_EQ(s.vocab_size(), 100000);
  EXPECT_EQ(all_tokens(s), toks);
  // moved-from shards stay safe, moved-to ones work
  TokenShard t = std::move(s);
  EXPECT_EQ(t[4], 70000);
}

TEST(Shards, EmptyShardIsValid) {
  TmpDir dir;
  write_shard(dir / "e.bin", 10, {});
  TokenShard s(dir / "e.bin");
  EXPECT_EQ(s.size(), 0u);
}

TEST(Shards, WriterRejectsOutOfVocabAndLeavesNoFile) {
  TmpDir dir;
  {
    ShardWriter w(dir / "w.bin", 100);
    std::vector<int32_t> ok = {1, 2, 3};
    w.append(ok);
    std::vector<int32_t> bad = {5, 100};
    EXPECT_ERROR(w.append(bad), "token id 100 at index 4");
  }
  EXPECT_FALSE(fs::exists(dir / "w.bin"));
  EXPECT_FALSE(fs::exists(dir / "w.bin.tmp"));
  {
    ShardWriter w(dir / "n.bin", 100);
    std::vector<int32_t> neg = {-1};
    EXPECT_ERROR(w.append(neg), "outside the vocab");
  }
  {  // abandoned without finish(): nothing appears
    ShardWriter w(dir / "u.bin", 100);
    std::vector<int32_t> ok = {1, 2, 3};
    w.append(ok);
  }
  EXPECT_FALSE(fs::exists(dir / "u.bin"));
  EXPECT_FALSE(fs::exists(dir / "u.bin.tmp"));
}

TEST(Shards, RejectsTruncation) {
  TmpDir dir;
  std::vector<int32_t> toks(100, 7);
  write_shard(dir / "t.bin", 1000, toks);
  fs::resize_file(dir / "t.bin", 64 + 99 * 2 + 1);  // one byte short
  EXPECT_ERROR(TokenShard(dir / "t.bin"), "truncated");
  EXPECT_ERROR(TokenShard(dir / "t.bin"), dir / "t.bin");  // names the file
  fs::resize_file(dir / "t.bin", 10);  // not even a header
  EXPECT_ERROR(TokenShard(dir / "t.bin"), "truncated");
  fs::resize_file(dir / "t.bin", 0);
  EXPECT_ERROR(TokenShard(dir / "t.bin"), "truncated");
}

TEST(Shards, RejectsTrailingBytes) {
  TmpDir dir;
  write_shard(dir / "t.bin", 1000, std::vector<int32_t>(10, 3));
  fs::resize_file(dir / "t.bin", 64 + 10 * 2 + 2);
  EXPECT_ERROR(TokenShard(dir / "t.bin"), "trailing");
}

TEST(Shards, RejectsBadHeaderFields) {
  TmpDir dir;
  const std::string p = dir / "h.bin";
  write_shard(p, 1000, std::vector<int32_t>(10, 3));
  patch(p, 0, "NOTATOKF", 8);
  EXPECT_ERROR(TokenShard(p), "bad magic");

  write_shard(p, 1000, std::vector<int32_t>(10, 3));
  uint32_t v2 = 2;
  patch(p, 8, &v2, 4);
  EXPECT_ERROR(TokenShard(p), "unsupported version 2");

  write_shard(p, 1000, std::vector<int32_t>(10, 3));
  uint32_t dt = 3;
  patch(p, 12, &dt, 4);
  EXPECT_ERROR(TokenShard(p), "dtype 3");

  write_shard(p, 1000, std::vector<int32_t>(10, 3));
  unsigned char one = 1;
  patch(p, 40, &one, 1);
  EXPECT_ERROR(TokenShard(p), "reserved");

  write_shard(p, 1000, std::vector<int32_t>(10, 3));
  uint64_t big = 1ull << 62;  // count far beyond the file: must not overflow into a pass
  patch(p, 16, &big, 8);
  EXPECT_ERROR(TokenShard(p), "truncated");

  EXPECT_ERROR(TokenShard(dir / "missing.bin"), "cannot open");
}

TEST(Shards, RejectsTokenOutOfVocab) {
  TmpDir dir;
  const std::string p = dir / "v.bin";
  write_shard(p, 1000, std::vector<int32_t>(100, 3));
  uint16_t bad = 1000;
  patch(p, 64 + 37 * 2, &bad, 2);
  EXPECT_ERROR(TokenShard(p), "token 1000 at index 37 is >= vocab size 1000");

  // uint32: a value >= 2^31 must not slip through as a negative int32
  write_shard(p, 100000, std::vector<int32_t>(50, 3));
  uint32_t huge = 0x80000001u;
  patch(p, 64 + 49 * 4, &huge, 4);
  EXPECT_ERROR(TokenShard(p), "at index 49");
}

// ------------------------------------------------------------------------------------------------
// documents

std::vector<std::string> docs_of(const std::string& text) {
  std::istringstream in(text);
  return read_documents(in);
}

TEST(Documents, BlankLineSeparated) {
  using V = std::vector<std::string>;
  EXPECT_EQ(docs_of("a b\nc\n\nd\n"), (V{"a b\nc", "d"}));
  EXPECT_EQ(docs_of("a\n\n\n\n b\n\n"), (V{"a", " b"}));           // repeated blanks, indentation kept
  EXPECT_EQ(docs_of("one\ntwo"), (V{"one\ntwo"}));                  // no trailing newline
  EXPECT_EQ(docs_of("\n\n  \n\tx\n \t \ny\n"), (V{"\tx", "y"}));    // leading blanks, ws-only lines
  EXPECT_EQ(docs_of("a\r\nb\r\n\r\nc\r\n"), (V{"a\nb", "c"}));      // CRLF
  EXPECT_EQ(docs_of("\xEF\xBB\xBFhi\n\nthere"), (V{"hi", "there"})); // BOM dropped
  EXPECT_EQ(docs_of(""), V{});
  EXPECT_EQ(docs_of("\n \n\r\n"), V{});
}

TEST(Documents, StreamingReaderCountsAndFileErrors) {
  TmpDir dir;
  write_text(dir / "d.txt", "x\n\ny\nz\n\n\nw");
  DocumentReader r(dir / "d.txt");
  std::string d;
  std::vector<std::string> got;
  while (r.next(d)) got.push_back(d);
  EXPECT_EQ(got, (std::vector<std::string>{"x", "y\nz", "w"}));
  EXPECT_EQ(r.documents_read(), 3u);
  EXPECT_FALSE(r.next(d));  // stays at end
  EXPECT_ERROR(DocumentReader(dir / "nope.txt"), "nope.txt");
  EXPECT_ERROR(DocumentReader(dir.path().string()), "directory");
}

TEST(Documents, Normalize) {
  EXPECT_EQ(normalize_document("\n\n a  \r\n\n\n b\t\n  \n"), " a\n b");
  EXPECT_EQ(normalize_document("x\fy\x01z"), "xyz");
  EXPECT_EQ(normalize_document(" \n\t\n"), "");
  // normalized documents survive a write/read round trip unchanged
  std::vector<std::string> docs = {normalize_document("p\n\nq"), normalize_document("r\r\ns  ")};
  std::string text = docs[0] + "\n\n" + docs[1] + "\n";
  EXPECT_EQ(docs_of(text), docs);
}

// ------------------------------------------------------------------------------------------------
// tokenizer (trained once on a tiny generated corpus)

const char* kWords[] = {"the",   "cat",   "sat",  "on",    "a",     "mat",  "dog",  "ran",
                        "fast",  "big",   "red",  "house", "and",   "then", "slept", "under",
                        "tree",  "river", "blue", "small", "quick", "over", "jumps", "lazy"};

// deterministic pseudo-English: `n` documents of 1-4 lines
std::vector<std::string> make_docs(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::string> docs;
  for (int d = 0; d < n; d++) {
    std::string doc;
    int lines = 1 + rng() % 4;
    for (int l = 0; l < lines; l++) {
      if (l) doc += '\n';
      int words = 3 + rng() % 12;
      for (int w = 0; w < words; w++) {
        std::string word = kWords[rng() % std::size(kWords)];
        if (w == 0) word[0] = static_cast<char>(std::toupper(word[0]));
        if (rng() % 17 == 0) word = std::to_string(rng() % 2000);
        doc += word;
        doc += (w + 1 < words) ? (rng() % 9 == 0 ? ", " : " ") : ".";
      }
    }
    docs.push_back(doc);
  }
  return docs;
}

std::string join_docs(const std::vector<std::string>& docs) {
  std::string s;
  for (const auto& d : docs) s += d + "\n\n";
  return s;
}

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TmpDir();
    write_text(*dir_ / "train.txt", join_docs(make_docs(400, 7)));
    TokenizerTrainOptions opt;
    opt.vocab_size = 400;
    tokenizer_train({*dir_ / "train.txt"}, *dir_ / "tok", opt);
    tok_ = new Tokenizer(Tokenizer::load(*dir_ / "tok.model"));
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
  }
  static inline TmpDir* dir_ = nullptr;
  static inline Tokenizer* tok_ = nullptr;
};

TEST_F(TokenizerTest, TrainedModelProperties) {
  const Tokenizer& tok = *tok_;
  EXPECT_EQ(tok.vocab_size(), 400);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.pad_id(), -1);
  EXPECT_EQ(tok.id_to_piece(3), "\n");
  EXPECT_TRUE(fs::exists(*dir_ / "tok.vocab"));
  // learned merges compress: a frequent word is a single piece
  EXPECT_EQ(tok.encode(" the house").size(), 2u);
  // exact round trip, newlines and unseen bytes (byte fallback) included
  for (std::string s : {"The cat sat.\nThe dog ran.", "  two leading spaces", "x\n\n\ny",
                        "caf\xC3\xA9 \xE2\x98\x83 {}<>~ 2024", "tab\there"}) {
    auto ids = tok.encode(s);
    EXPECT_EQ(tok.decode(ids), s);
    for (int id : ids) EXPECT_NE(id, tok.unk_id()) << "unknown piece in: " << s;
  }
  // a line-initial word tokenizes the same after "\n" as at the start of a document
  auto a = tok.encode("Then the cat");
  auto b = tok.encode("x\nThen the cat");
  ASSERT_GT(b.size(), a.size());
  EXPECT_TRUE(std::equal(a.rbegin(), a.rend(), b.rbegin()));
  EXPECT_ERROR(tok.decode({5, 400}), "token id 400 at position 1");
}

TEST_F(TokenizerTest, SerializedRoundTrip) {
  std::string bytes = tok_->serialized();
  EXPECT_EQ(bytes, read_bytes(*dir_ / "tok.model"));
  Tokenizer t2 = Tokenizer::from_serialized(bytes);
  EXPECT_EQ(t2.vocab_size(), tok_->vocab_size());
  const std::string s = "The quick dog jumps over 42 lazy cats.\nThen slept.";
  EXPECT_EQ(t2.encode(s), tok_->encode(s));
}

TEST_F(TokenizerTest, TrainingIsReproducible) {
  TokenizerTrainOptions opt;
  opt.vocab_size = 400;
  tokenizer_train({*dir_ / "train.txt"}, *dir_ / "again", opt);
  EXPECT_EQ(read_bytes(*dir_ / "again.model"), read_bytes(*dir_ / "tok.model"));
}

TEST_F(TokenizerTest, LoadErrors) {
  EXPECT_ERROR(Tokenizer::load(*dir_ / "missing.model"), "not found");
  write_text(*dir_ / "junk.model", "this is definitely not a protobuf \x01\x02\xff\xfe");
  EXPECT_ERROR(Tokenizer::load(*dir_ / "junk.model"), "not a valid SentencePiece model");
  write_text(*dir_ / "empty.model", "");
  EXPECT_ERROR(Tokenizer::load(*dir_ / "empty.model"), "empty");
  std::string bytes = tok_->serialized();
  write_text(*dir_ / "cut.model", bytes.substr(0, bytes.size() / 2));
  EXPECT_ERROR(Tokenizer::load(*dir_ / "cut.model"), "cut.model");
  EXPECT_ERROR(Tokenizer::from_serialized("garbage"), "not a valid SentencePiece model");
}

TEST_F(TokenizerTest, TrainErrors) {
  EXPECT_ERROR(tokenizer_train({*dir_ / "missing.txt"}, *dir_ / "t2", 300), "not found");
  write_text(*dir_ / "blank.txt", "\n\n  \n");
  EXPECT_ERROR(tokenizer_train({*dir_ / "blank.txt"}, *dir_ / "t2", 300), "no text");
  EXPECT_ERROR(tokenizer_train({*dir_ / "train.txt"}, *dir_ / "t2", 100), "vocab size 100");
  // more pieces than the corpus can produce
  EXPECT_ERROR(tokenizer_train({*dir_ / "train.txt"}, *dir_ / "t2", 5000), "tokenizer train failed");
  EXPECT_FALSE(fs::exists(*dir_ / "t2.model"));
}

// ---- data_prepare ------------------------------------------------------------------------------

TEST_F(TokenizerTest, PrepareCountsSplitAndContent) {
  TmpDir dir;
  const Tokenizer& tok = *tok_;
  auto docs = make_docs(120, 99);
  // two input files, the second with messier separators
  std::vector<std::string> first(docs.begin(), docs.begin() + 70), second(docs.begin() + 70, docs.end());
  write_text(dir / "one.txt", join_docs(first));
  std::string messy = "\n\n";
  for (const auto& d : second) messy += d + "\r\n \n\n";
  write_text(dir / "two.txt", messy);

  const uint64_t seed = 42;
  const double frac = 0.25;
  PrepareStats st = data_prepare({dir / "one.txt", dir / "two.txt"}, tok, dir / "out", frac, seed);

  // expected: documents numbered across files, each encoded + EOS, split by is_val_document
  // (here both splits are non-empty, so the last-document rule does not apply)
  std::vector<int32_t> want_train, want_val;
  uint64_t want_train_docs = 0, want_val_docs = 0;
  for (size_t i = 0; i < docs.size(); i++) {
    auto ids = tok.encode(docs[i]);
    ids.push_back(tok.eos_id());
    bool v = is_val_document(seed, i, frac);
    auto& dst = v ? want_val : want_train;
    dst.insert(dst.end(), ids.begin(), ids.end());
    (v ? want_val_docs : want_train_docs)++;
  }
  ASSERT_GT(want_val_docs, 0u);
  ASSERT_GT(want_train_docs, 0u);
  EXPECT_EQ(st.documents, docs.size());
  EXPECT_EQ(st.train_documents, want_train_docs);
  EXPECT_EQ(st.val_documents, want_val_docs);
  EXPECT_EQ(st.train_tokens, want_train.size());
  EXPECT_EQ(st.val_tokens, want_val.size());
  // ~25% of 120 documents
  EXPECT_GT(want_val_docs, 15u);
  EXPECT_LT(want_val_docs, 50u);

  TokenShard train(dir / "out/train.bin"), val(dir / "out/val.bin");
  EXPECT_EQ(train.vocab_size(), tok.vocab_size());
  EXPECT_EQ(train.dtype_bytes(), 2);
  EXPECT_EQ(all_tokens(train), want_train);
  EXPECT_EQ(all_tokens(val), want_val);
  // one EOS per document: documents are whole, never split across the two shards
  auto v = all_tokens(val);
  EXPECT_EQ(static_cast<uint64_t>(std::count(v.begin(), v.end(), tok.eos_id())), want_val_docs);
  EXPECT_EQ(v.back(), tok.eos_id());

  auto meta = nlohmann::json::parse(read_bytes(dir / "out/meta.json"));
  EXPECT_EQ(meta["documents"].get<uint64_t>(), docs.size());
  EXPECT_EQ(meta["train"]["tokens"].get<uint64_t>(), want_train.size());
  EXPECT_EQ(meta["val"]["documents"].get<uint64_t>(), want_val_docs);
  EXPECT_EQ(meta["vocab_size"].get<int>(), tok.vocab_size());
  EXPECT_EQ(meta["tokenizer"]["eos_id"].get<int>(), tok.eos_id());
  EXPECT_EQ(meta["sources"].size(), 2u);
  EXPECT_EQ(Tokenizer::load(dir / "out/tokenizer.model").serialized(), tok.serialized());
  EXPECT_FALSE(fs::exists(dir / "out/train.bin.tmp"));
}

TEST_F(TokenizerTest, PrepareIsDeterministic) {
  TmpDir dir;
  // > 256 documents so several parallel batches are involved
  write_text(dir / "c.txt", join_docs(make_docs(700, 5)));
  data_prepare({dir / "c.txt"}, *tok_, dir / "a", 0.1, 7);
  data_prepare({dir / "c.txt"}, *tok_, dir / "b", 0.1, 7);
  auto st = data_prepare({dir / "c.txt"}, *tok_, dir / "c", 0.1, 8);
  EXPECT_EQ(read_bytes(dir / "a/train.bin"), read_bytes(dir / "b/train.bin"));
  EXPECT_EQ(read_bytes(dir / "a/val.bin"), read_bytes(dir / "b/val.bin"));
  EXPECT_EQ(read_bytes(dir / "a/meta.json"), read_bytes(dir / "b/meta.json"));
  // another seed picks other validation documents, same totals
  EXPECT_NE(read_bytes(dir / "a/val.bin"), read_bytes(dir / "c/val.bin"));
  EXPECT_EQ(TokenShard(dir / "a/train.bin").size() + TokenShard(dir / "a/val.bin").size(),
            st.train_tokens + st.val_tokens);
}

TEST_F(TokenizerTest, PrepareKeepsBothSplitsNonEmpty) {
  TmpDir dir;
  write_text(dir / "two.txt", "First document here.\n\nSecond document here.\n");
  // a tiny fraction would send nothing to val: the last document goes there
  auto st = data_prepare({dir / "two.txt"}, *tok_, dir / "o1", 1e-9, 1);
  EXPECT_EQ(st.train_documents, 1u);
  EXPECT_EQ(st.val_documents, 1u);
  EXPECT_EQ(TokenShard(dir / "o1/val.bin").size(), tok_->encode("Second document here.").size() + 1);
  // a huge fraction would leave train empty: the last document goes to train
  st = data_prepare({dir / "two.txt"}, *tok_, dir / "o2", 0.999999, 1);
  EXPECT_EQ(st.train_documents, 1u);
  EXPECT_EQ(st.val_documents, 1u);
  // val_fraction 0: no validation set at all
  st = data_prepare({dir / "two.txt"}, *tok_, dir / "o3", 0.0, 1);
  EXPECT_EQ(st.val_documents, 0u);
  EXPECT_EQ(TokenShard(dir / "o3/val.bin").size(), 0u);
}

TEST_F(TokenizerTest, PrepareErrors) {
  TmpDir dir;
  write_text(dir / "empty.txt", "");
  write_text(dir / "blank.txt", "\n\n \n\t\n");
  EXPECT_ERROR(data_prepare({dir / "empty.txt"}, *tok_, dir / "o", 0.1, 1), "no documents");
  EXPECT_ERROR(data_prepare({dir / "empty.txt", dir / "blank.txt"}, *tok_, dir / "o", 0.1, 1),
               "no documents");
  EXPECT_FALSE(fs::exists(dir / "o/train.bin"));
  EXPECT_ERROR(data_prepare({dir / "missing.txt"}, *tok_, dir / "o", 0.1, 1), "missing.txt");
  EXPECT_ERROR(data_prepare({}, *tok_, dir / "o", 0.1, 1), "no input");
  write_text(dir / "ok.txt", "hello\n");
  EXPECT_ERROR(data_prepare({dir / "ok.txt"}, *tok_, dir / "o", 1.0, 1), "val fraction");
  EXPECT_ERROR(data_prepare({dir / "ok.txt"}, *tok_, dir / "o", -0.1, 1), "val fraction");
}

// ------------------------------------------------------------------------------------------------
// data loader, over a shard whose token at position i is i % vocab (so windows are checkable)

std::shared_ptr<const TokenShard> counting_shard(const TmpDir& dir, size_t n, int64_t vocab = 65536) {
  std::vector<int32_t> toks(n);
  for (size_t i = 0; i < n; i++) toks[i] = static_cast<int32_t>(i % vocab);
  write_shard(dir / "count.bin", vocab, toks);
  return std::make_shared<const TokenShard>(dir / "count.bin");
}

struct Batch {
  std::vector<int32_t> in, tg;
  bool operator==(const Batch&) const = default;
};

Batch draw(DataLoader& dl) {
  Batch b{std::vector<int32_t>(dl.B() * dl.T()), std::vector<int32_t>(dl.B() * dl.T())};
  dl.next_batch(b.in.data(), b.tg.data());
  return b;
}

TEST(DataLoader, RandomWindowsAreValidAndShifted) {
  TmpDir dir;
  const int B = 4, T = 16;
  const size_t N = 5000;
  auto shard = counting_shard(dir, N);
  DataLoader dl(shard, B, T, 123);
  std::set<int32_t> starts;
  for (int k = 0; k < 50; k++) {
    Batch b = draw(dl);
    for (int r = 0; r < B; r++) {
      int32_t s = b.in[r * T];
      ASSERT_GE(s, 0);
      ASSERT_LE(static_cast<size_t>(s) + T, N - 1);  // window of T+1 tokens inside the shard
      starts.insert(s);
      for (int t = 0; t < T; t++) {
        EXPECT_EQ(b.in[r * T + t], s + t);       // consecutive tokens
        EXPECT_EQ(b.tg[r * T + t], s + t + 1);   // next-token targets
        if (t + 1 < T) {
          EXPECT_EQ(b.tg[r * T + t], b.in[r * T + t + 1]);
        }
      }
    }
  }
  EXPECT_GT(starts.size(), 180u);  // 200 draws from ~5000 starts: nearly all distinct
  EXPECT_EQ(dl.state().batches, 50u);
}

TEST(DataLoader, DeterministicAndResumable) {
  TmpDir dir;
  auto shard = counting_shard(dir, 3000);
  DataLoader a(shard, 3, 8, 77), b(shard, 3, 8, 77), c(shard, 3, 8, 78);
  std::vector<Batch> seq;
  for (int k = 0; k < 10; k++) {
    seq.push_back(draw(a));
    EXPECT_EQ(seq.back(), draw(b));
  }
  bool differs = false;
  for (int k = 0; k < 10; k++) differs |= !(draw(c) == seq[k]);
  EXPECT_TRUE(differs);

  // save after 4 batches, restore into a loader built with another seed
  DataLoader r(shard, 3, 8, 77);
  for (int k = 0; k < 4; k++) draw(r);
  LoaderState saved = r.state();
  EXPECT_EQ(saved.seed, 77u);
  EXPECT_EQ(saved.batches, 4u);
  DataLoader resumed(shard, 3, 8, 999);
  resumed.set_state(saved);
  for (int k = 4; k < 10; k++) EXPECT_EQ(draw(resumed), seq[k]) << "batch " << k;

  // data-parallel ranks draw different windows
  DataLoader r0(shard, 3, 8, 77, 0, 2), r1(shard, 3, 8, 77, 1, 2);
  EXPECT_FALSE(draw(r0) == draw(r1));
}

TEST(DataLoader, EvalCoversShardOnce) {
  TmpDir dir;
  const int B = 4, T = 10;
  auto shard = counting_shard(dir, 1001);  // (1001-1)/10 = 100 windows = 25 full batches
  DataLoader dl(shard, B, T, 0);
  EXPECT_EQ(dl.eval_windows(), 100u);
  EXPECT_EQ(dl.eval_batches(false), 25u);
  EXPECT_EQ(dl.eval_tokens_covered(false), 1000u);
  std::vector<int32_t> in(B * T), tg(B * T);
  for (int pass = 0; pass < 2; pass++) {  // reset() rewinds
    dl.reset();
    int64_t expect = 0, batches = 0;
    while (dl.next_eval_batch(in.data(), tg.data())) {
      batches++;
      for (int i = 0; i < B * T; i++) {
        ASSERT_EQ(in[i], expect);  // windows are consecutive and non-overlapping
        ASSERT_EQ(tg[i], expect + 1);
        expect++;
      }
    }
    EXPECT_EQ(batches, 25);
    EXPECT_EQ(expect, 1000);  // every token but the last is an input exactly once
    EXPECT_FALSE(dl.next_eval_batch(in.data(), tg.data()));
  }
  // eval does not disturb the random stream
  EXPECT_EQ(dl.state().batches, 0u);
}

TEST(DataLoader, EvalPartialBatchAndRanks) {
  TmpDir dir;
  const int B = 4, T = 10;
  auto shard = counting_shard(dir, 1000);  // 99 windows: 24 full batches + 3 windows
  DataLoader dl(shard, B, T, 0);
  EXPECT_EQ(dl.eval_windows(), 99u);
  EXPECT_EQ(dl.eval_batches(false), 24u);
  EXPECT_EQ(dl.eval_batches(true), 25u);
  EXPECT_EQ(dl.eval_tokens_covered(false), 960u);
  EXPECT_EQ(dl.eval_tokens_covered(true), 990u);
  std::vector<int32_t> in(B * T, -7), tg(B * T, -7);
  int n = 0, rows = 0;
  while (dl.next_eval_batch(in.data(), tg.data())) n++;
  EXPECT_EQ(n, 24);  // partial batch dropped by default
  dl.reset();
  n = 0;
  int last_rows = 0;
  while (dl.next_eval_batch(in.data(), tg.data(), &rows)) {
    n++;
    last_rows = rows;
  }
  EXPECT_EQ(n, 25);
  EXPECT_EQ(last_rows, 3);
  EXPECT_EQ(rows, 0);
  EXPECT_EQ(in[3 * T - 1], 989);  // last window covered: inputs 960..989
  EXPECT_EQ(tg[3 * T - 1], 990);

  // two ranks split each global batch of 2·B windows like a training batch (rank r: rows r·B..):
  // together they cover every window exactly once, in the same number of calls; the last global
  // batch (3 windows) is rank 0's alone, and rank 1 gets a call with no rows
  std::multiset<int32_t> seen;
  uint64_t tokens = 0;
  DataLoader one(shard, 2 * B, T, 0);
  std::vector<int32_t> one_in(2 * B * T), one_tg(2 * B * T);
  for (int r = 0; r < 2; r++) {
    DataLoader d(shard, B, T, 0, r, 2);
    EXPECT_EQ(d.eval_batches(true), 13u);
    tokens += d.eval_tokens_covered(true);
    one.reset();
    int calls = 0, one_rows = 0;
    while (d.next_eval_batch(in.data(), tg.data(), &rows)) {
      calls++;
      ASSERT_TRUE(one.next_eval_batch(one_in.data(), one_tg.data(), &one_rows));
      EXPECT_EQ(rows, std::clamp(one_rows - r * B, 0, B)) << "rank " << r << " call " << calls;
      for (int i = 0; i < rows * T; i++) ASSERT_EQ(in[i], one_in[r * B * T + i]) << "rank " << r << " call " << calls;
      for (int i = 0; i < rows; i++) seen.insert(in[i * T]);
    }
    EXPECT_EQ(calls, 13) << "rank " << r;
    EXPECT_EQ(rows, 0);
  }
  EXPECT_EQ(seen.size(), 99u);
  EXPECT_EQ(std::set<int32_t>(seen.begin(), seen.end()).size(), 99u);
  EXPECT_EQ(tokens, 990u);
}

// Data parallel: rank r of `world` ranks with B rows reads rows r·B.. of the one-process batch of
// B·world rows, batch after batch, so the data order does not depend on the number of ranks.
TEST(DataLoader, RanksShareEachGlobalBatch) {
  TmpDir dir;
  auto shard = counting_shard(dir, 5000);
  const int B = 2, T = 8, world = 3;
  DataLoader one(shard, B * world, T, 42);
  std::vector<DataLoader> ranks;
  for (int r = 0; r < world; r++) ranks.emplace_back(shard, B, T, 42, r, world);
  std::vector<int32_t> in(B * world * T), tg(B * world * T), rin(B * T), rtg(B * T);
  for (int k = 0; k < 3; k++) {
    one.next_batch(in.data(), tg.data());
    for (int r = 0; r < world; r++) {
      ranks[r].next_batch(rin.data(), rtg.data());
      for (int i = 0; i < B * T; i++) {
        ASSERT_EQ(rin[i], in[r * B * T + i]) << "batch " << k << " rank " << r << " token " << i;
        ASSERT_EQ(rtg[i], tg[r * B * T + i]);
      }
    }
  }
  EXPECT_NE(std::vector<int32_t>(in.begin(), in.begin() + B * T),
            std::vector<int32_t>(in.begin() + B * T, in.begin() + 2 * B * T));  // ranks differ
}

TEST(DataLoader, Errors) {
  TmpDir dir;
  auto shard = counting_shard(dir, 16);
  EXPECT_ERROR(DataLoader(shard, 2, 16, 0), "fewer than");
  EXPECT_NO_THROW(DataLoader(shard, 2, 15, 0));  // exactly T+1 tokens is enough
  EXPECT_ERROR(DataLoader(shard, 0, 4, 0), "must be positive");
  EXPECT_ERROR(DataLoader(shard, 2, 4, 0, 2, 2), "rank");
  EXPECT_ERROR(DataLoader(dir / "missing.bin", 2, 4, 0), "missing.bin");
}

// ------------------------------------------------------------------------------------------------
// corpus cleaners

TEST(Corpus, BrownDetokenize) {
  std::string tagged =
      "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ,/, "
      "by/in Allen/np Jr./np ./.\n"
      "It/pps cost/vbd 1-1/2/cd cents/nns (/( roughly/rb )/) ;/. why/wrb ?/.\n"
      "\n\nMerger/nn-hl proposed/vbn-hl\n"
      "However/wrb ,/, the/at '/' big/jj '/' one/cd left/vbd --/-- fast/rb ./.\n";
  EXPECT_EQ(brown_to_text(tagged),
            "The jury said \"no evidence\" was found, by Allen Jr. It cost 1-1/2 cents (roughly); "
            "why?\n"
            "Merger proposed\n"
            "However, the 'big' one left -- fast.");
}

TEST(Corpus, SplitSentences) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split_sentences("Mr. Smith went to Washington. He met J. Q. Adams at 5 p.m. today! "
                            "Was it the U.S. Army? \"Yes.\" (Applause.) 1990 was good."),
            (V{"Mr. Smith went to Washington.", "He met J. Q. Adams at 5 p.m. today!",
               "Was it the U.S. Army?", "\"Yes.\"", "(Applause.)", "1990 was good."}));
  EXPECT_EQ(split_sentences("no end here"), (V{"no end here"}));
  EXPECT_EQ(split_sentences("  "), V{});
}

}  // namespace
