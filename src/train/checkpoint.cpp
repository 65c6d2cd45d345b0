#include "train/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include "model/model_io.h"

namespace fs = std::filesystem;

namespace mohge {

// Every file of one checkpoint into the directory tmp.
static void write_checkpoint_files(const fs::path& tmp, const Model& m, const AdamW& opt, const TrainerState& st,
                                   const std::string& tokenizer_bytes, const std::string& run_toml,
                                   const nlohmann::json& routing) {
  model_save(tmp.string(), m);
  std::vector<TensorView> ts;
  std::vector<float> m_host, v_host;
  const float* mom1 = opt.m.host_read(opt.m.size(), m_host);
  const float* mom2 = opt.v.host_read(opt.v.size(), v_host);
  for (auto& p : m.params.infos()) {
    ts.push_back({"m." + p.name, "F32", p.shape, mom1 + p.offset, (size_t)p.numel * 4});
    ts.push_back({"v." + p.name, "F32", p.shape, mom2 + p.offset, (size_t)p.numel * 4});
  }
  safetensors_write((tmp / "optimizer.safetensors").string(), ts);
  write_file_atomic((tmp / "trainer_state.json").string(), trainer_state_to_json(st).dump(2) + "\n");
  write_file_atomic((tmp / "tokenizer.model").string(), tokenizer_bytes);
  write_file_atomic((tmp / "run.toml").string(), run_toml);
  if (!routing.is_null()) write_file_atomic((tmp / "routing.json").string(), routing.dump(1) + "\n");
}

std::string checkpoint_save(const std::string& out_dir, const Model& m, const AdamW& opt,
                            const TrainerState& st, const std::string& tokenizer_bytes,
                            const std::string& run_toml, int keep, const nlohmann::json& routing) {
  fs::path root = fs::path(out_dir) / "checkpoints";
  fs::create_directories(root);
  std::string name = fmt::format("step_{:08d}", st.step);
  fs::path tmp = root / (".tmp_" + name), final_dir = root / name;
  // A complete checkpoint of this step already exists (a resumed run stopped before its first
  // step): keep it rather than open a window in which neither copy exists.
  if (fs::exists(final_dir / "config.json")) return final_dir.string();
  // leftovers of saves killed midway are incomplete by construction
  for (auto& e : fs::directory_iterator(root))
    if (e.path().filename().string().rfind(".tmp_", 0) == 0) fs::remove_all(e.path());
  MOHGE_CHECK(opt.whole(), "checkpoint_save: the optimizer holds a shard of the moments (gather them first)");
  fs::create_directories(tmp);
  // a save that fails (disk full, quota) leaves the previous checkpoints as they were and no
  // partial directory behind
  try {
    write_checkpoint_files(tmp, m, opt, st, tokenizer_bytes, run_toml, routing);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  fs::remove_all(final_dir);  // a step_* dir without config.json: never completed
  fs::rename(tmp, final_dir);
  // prune: keep the newest `keep` complete checkpoints
  std::vector<fs::path> all;
  for (auto& e : fs::directory_iterator(root))
    if (e.path().filename().string().rfind("step_", 0) == 0) all.push_back(e.path());
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i + keep < all.size(); i++) fs::remove_all(all[i]);
  return final_dir.string();
}

void checkpoint_load_training(const std::string& dir, const Model& m, AdamW& opt, TrainerState& st) {
  auto f = SafetensorsFile::load(dir + "/optimizer.safetensors");
  std::vector<float> m_full(m.params.total(), 0.0f), v_full(m.params.total(), 0.0f);  // the files hold whole moments
  for (auto& p : m.params.infos()) {
    std::copy_n(f.f32("m." + p.name, p.shape), p.numel, m_full.data() + p.offset);
    std::copy_n(f.f32("v." + p.name, p.shape), p.numel, v_full.data() + p.offset);
  }
  opt.load_moments(m_full.data(), v_full.data());  // the ranges opt owns (ZeRO-1: this rank's shard)
  std::string path = dir + "/trainer_state.json";
  st = trainer_state_parse(read_file_text(path), path);
  const std::string name = fs::path(dir).filename().string();
  if (name.rfind("step_", 0) == 0)
    MOHGE_CHECK(name == fmt::format("step_{:08d}", st.step), "{}: step {} does not match the checkpoint directory {}",
                path, st.step, name);
}

}  // namespace mohge
