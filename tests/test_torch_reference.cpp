// defines: the engine against the PyTorch reference (tools/torch_ref.py, float64) for every model kind:
// tools/make_test_checkpoint.py writes a random checkpoint + tokens, `mohge grad` writes our logits,
// losses and every parameter gradient, torch_ref.py writes the reference ones, and
// tools/compare_tensors.py must find every tensor within rtol 1e-4 (and the same set of names).
// Skipped when /usr/bin/python3 cannot import torch (Debian's python3-torch).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "core/fileio.h"
#include "core/safetensors.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

// MOHGE_TEST_PYTHON overrides the interpreter (e.g. to check the skip path with one lacking torch).
const std::string kPython = getenv("MOHGE_TEST_PYTHON") ? getenv("MOHGE_TEST_PYTHON") : "/usr/bin/python3";
const std::string kTools = std::string(MOHGE_SOURCE_DIR) + "/tools";

constexpr auto q = mohge::test::shell_quote;
using mohge::test::TmpDir;

// Runs a shell command under `timeout 120`, stdout+stderr together; returns the exit status.
int run(const std::string& cmd, std::string& output) {
  const mohge::test::CommandResult r = mohge::test::run_command("timeout 120 " + cmd, /*merge_stderr=*/true);
  output = r.out;
  return r.rc;
}

bool torch_available() {
  static const bool ok = [] {
    std::string out;
    return run(kPython + " -c 'import torch'", out) == 0;
  }();
  return ok;
}

struct RefCase {
  const char* name;
  const char* kind;
  const char* flags;  // extra make_test_checkpoint.py flags
  bool tied;
};

class TorchReference : public ::testing::TestWithParam<RefCase> {};

TEST_P(TorchReference, GradMatchesPyTorchReference) {
  if (!torch_available())
    GTEST_SKIP() << "PyTorch not available (apt-get install python3-torch): skipping the reference comparison";
  const RefCase& c = GetParam();
  TmpDir d;
  const std::string ck = d / "ck";
  std::string out;

  int rc = run(kPython + " " + q(kTools + "/make_test_checkpoint.py") + " --out " + q(ck) + " --kind " + c.kind + " " +
                   c.flags,
               out);
  ASSERT_EQ(rc, 0) << "make_test_checkpoint.py failed:\n" << out;
  std::printf("%s", out.c_str());

  // the checkpoint is what this case claims to be
  auto cfg = nlohmann::json::parse(mohge::read_file_text(ck + "/config.json"));
  EXPECT_EQ(cfg.at("ffn_kind").get<std::string>(), c.kind);
  EXPECT_EQ(cfg.at("tie_word_embeddings").get<bool>(), c.tied);
  EXPECT_EQ(mohge::SafetensorsFile::load(ck + "/model.safetensors").has("lm_head.weight"), !c.tied);

  rc = run(q(MOHGE_BINARY) + " grad --checkpoint " + q(ck) + " --tokens-file " + q(ck + "/tokens.safetensors") +
               " --out " + q(d / "ours.safetensors"),
           out);
  ASSERT_EQ(rc, 0) << "mohge grad failed:\n" << out;

  rc = run(kPython + " " + q(kTools + "/torch_ref.py") + " --checkpoint " + q(ck) + " --tokens-file " +
               q(ck + "/tokens.safetensors") + " --out " + q(d / "ref.safetensors"),
           out);
  ASSERT_EQ(rc, 0) << "torch_ref.py failed:\n" << out;

  rc = run(kPython + " " + q(kTools + "/compare_tensors.py") + " " + q(d / "ours.safetensors") + " " +
               q(d / "ref.safetensors") + " --rtol 1e-4",
           out);
  std::printf("%s", out.c_str());
  EXPECT_EQ(rc, 0) << "engine and PyTorch reference differ:\n" << out;
  EXPECT_NE(out.find(" 0 failure(s)"), std::string::npos) << out;

  // every parameter gradient was compared, plus logits, loss and lm_loss
  const size_t params = mohge::SafetensorsFile::load(ck + "/model.safetensors").tensors().size();
  EXPECT_NE(out.find("compared " + std::to_string(params + 3) + " tensors"), std::string::npos)
      << "expected " << params + 3 << " tensors compared:\n" << out;
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, TorchReference,
    ::testing::Values(RefCase{"dense", "dense", "", false}, RefCase{"dense_tied", "dense", "--tie", true},
                      RefCase{"moe_top_k", "moe", "--router top_k", false},
                      RefCase{"hmoe_top_p", "hmoe", "--router top_p", false},
                      RefCase{"mohge_softmax", "mohge", "--gate-norm softmax", false},
                      RefCase{"mohge_renorm", "mohge", "--gate-norm renorm", false}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
