// defines: gather_experts (see expert_gather.h)
#include "train/expert_gather.h"

#include <string>
#include <vector>

#include "core/error.h"
#include "moe/expert_parallel.h"
#include "train/grad_sync.h"

namespace mohge {

namespace {

// The EP rank holding the expert a tensor name "…experts.<e>.…" belongs to.
int owner_of(const std::string& name, const ExpertSlots& slots) {
  const size_t at = name.find(".experts.") + 9;
  const int e = std::stoi(name.substr(at, name.find('.', at) - at));
  return slots.slot[e] / slots.per_rank;
}

}  // namespace

// Rank r sends, for each of its expert tensors in registration order, [weights | m | v]; rank 0
// walks the full model's expert tensors owned by r in the same order (both list a layer's experts
// in ascending global id), so no names travel.
FullModel gather_experts(const Model& m, const AdamW& opt, Collective& group) {
  const int D = group.size(), me = group.rank();
  const ExpertSlots slots = expert_slots(m.cfg.moe, m.cfg.expert_parallel);
  std::vector<float> send;
  for (auto& p : m.params.infos())
    if (is_expert_param(p.name))
      for (const float* src : {m.params.all_data(), opt.m.data(), opt.v.data()})
        send.insert(send.end(), src + p.offset, src + p.offset + p.numel);
  std::vector<int64_t> send_count(D, 0), send_offset(D, 0), recv_count(D, 0), recv_offset(D, 0);
  send_count[0] = (int64_t)send.size();
  FullModel full;
  if (me == 0) {
    ModelConfig one = m.cfg;
    one.expert_parallel = {};
    full.model = std::make_unique<Model>(one, m.backend());
    full.opt = std::make_unique<AdamW>(full.model->params, AdamWConfig{});
    for (auto& p : full.model->params.infos())
      if (is_expert_param(p.name)) recv_count[owner_of(p.name, slots)] += 3 * p.numel;
    for (int r = 1; r < D; r++) recv_offset[r] = recv_offset[r - 1] + recv_count[r - 1];
  }
  std::vector<float> recv(me == 0 ? (size_t)(recv_offset[D - 1] + recv_count[D - 1]) : 0);
  group.alltoallv(send.data(), send_count.data(), send_offset.data(), recv.data(), recv_count.data(),
                  recv_offset.data());
  if (me != 0) return full;
  ParamTable& fp = full.model->params;
  std::vector<int64_t> at(recv_offset);
  for (auto& p : fp.infos()) {
    float* dst[3] = {fp.all_data() + p.offset, full.opt->m.data() + p.offset, full.opt->v.data() + p.offset};
    if (is_expert_param(p.name)) {
      int64_t& pos = at[owner_of(p.name, slots)];
      for (float* d : dst) std::copy_n(recv.data() + pos, p.numel, d), pos += p.numel;
    } else {  // replicated: this rank's copy
      const ParamInfo& mine = m.params.infos()[m.params.find(p.name)];
      const float* src[3] = {m.params.all_data() + mine.offset, opt.m.data() + mine.offset, opt.v.data() + mine.offset};
      for (int k = 0; k < 3; k++) std::copy_n(src[k], p.numel, dst[k]);
    }
  }
  return full;
}

}  // namespace mohge
