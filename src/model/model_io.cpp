#include "model/model_io.h"

#include <filesystem>

#include "core/error.h"
#include "core/fileio.h"
#include "core/safetensors.h"

namespace fs = std::filesystem;

namespace mohge {

void model_save(const std::string& dir, const Model& m) {
  write_file_atomic(dir + "/config.json", model_config_to_json(m.cfg).dump(2) + "\n");
  std::vector<TensorView> ts;
  std::vector<float> staging;
  const float* w = m.params.host_data(staging);
  for (auto& p : m.params.infos()) {
    ts.push_back({p.name, "F32", p.shape, w + p.offset, (size_t)p.numel * 4});
  }
  safetensors_write(dir + "/model.safetensors", ts, {{"format", "pt"}});
}

nlohmann::json checkpoint_config_json(const std::string& dir) {
  std::string cfg_path = dir + "/config.json";
  MOHGE_CHECK(fs::exists(cfg_path), "{}: not a checkpoint (no config.json)", dir);
  try {
    return nlohmann::json::parse(read_file_text(cfg_path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed JSON ({})", cfg_path, e.what());
  }
}

// Every tensor of st is one of m's (or, own_experts_only, another rank's expert).
static void check_no_unknown_tensors(const SafetensorsFile& st, const Model& m, bool own_experts_only) {
  for (auto& t : st.tensors())
    MOHGE_CHECK(m.params.find(t.name) >= 0 || (own_experts_only && t.name.find(".experts.") != std::string::npos),
                "{}: tensor '{}' is not part of the model that config.json describes", st.path(),
                t.name);
}

void model_load_weights(const std::string& dir, Model& m, bool own_experts_only) {
  auto st = SafetensorsFile::load(dir + "/model.safetensors");
  for (auto& p : m.params.infos())
    m.params.backend().upload(m.params.all_data() + p.offset, st.f32(p.name, p.shape), (size_t)p.numel * 4);
  check_no_unknown_tensors(st, m, own_experts_only);
}

std::unique_ptr<Model> model_load(const std::string& dir, Backend& be) {
  auto model = std::make_unique<Model>(model_config_from_json(checkpoint_config_json(dir), dir + "/config.json"), be);
  model_load_weights(dir, *model);
  return model;
}

std::unique_ptr<Model> model_load_inference(const std::string& dir, Backend& be, const std::string& weights_dtype) {
  ModelConfig cfg = model_config_from_json(checkpoint_config_json(dir), dir + "/config.json");
  if (!weights_dtype.empty()) cfg.matmul_precision = precision_from_string(weights_dtype, "--weights-dtype");
  auto model = std::make_unique<Model>(cfg, be, nullptr, /*allocate=*/false);
  ParamTable& params = model->params;
  auto st = SafetensorsFile::map(dir + "/model.safetensors");
  // Every tensor is checked (shape, finite values) wherever it lies. The mapping is the weights
  // themselves when the file holds them as allocate() would (model_save writes them in
  // registration order; sizes that are multiples of 16 floats leave no padding between them) and
  // they start on a cache line (files written before the writer aligned the data are copied).
  const auto& infos = params.infos();
  std::vector<const float*> src(infos.size());
  for (size_t i = 0; i < infos.size(); i++) src[i] = st.f32(infos[i].name, infos[i].shape);
  check_no_unknown_tensors(st, *model, false);
  const float* base = src[0] - infos[0].offset;
  bool in_place = st.mapped() && be.host_accessible() && reinterpret_cast<uintptr_t>(base) % 64 == 0;
  for (size_t i = 0; i < infos.size() && in_place; i++) in_place = src[i] == base + infos[i].offset;
  if (in_place) {
    params.adopt(st.storage(), base);
  } else {
    params.allocate(/*grads=*/false);
    for (size_t i = 0; i < infos.size(); i++)
      be.upload(params.all_data() + infos[i].offset, src[i], (size_t)infos[i].numel * 4);
  }
  model->freeze_for_inference();
  return model;
}

std::string checkpoint_resolve(const std::string& path) {
  MOHGE_CHECK(fs::exists(path), "checkpoint {} does not exist", path);
  if (fs::exists(fs::path(path) / "config.json")) return path;
  fs::path ck = fs::path(path) / "checkpoints";
  std::string best;
  if (fs::is_directory(ck))
    for (auto& e : fs::directory_iterator(ck)) {
      std::string name = e.path().filename().string();
      if (name.rfind("step_", 0) == 0 && fs::exists(e.path() / "config.json") && name > fs::path(best).filename().string())
        best = e.path().string();
    }
  MOHGE_CHECK(!best.empty(), "{}: neither a checkpoint (config.json) nor a run directory with checkpoints/", path);
  return best;
}

}  // namespace mohge
