#include "model/ffn.h"

#include "model/ffn_dense.h"
#include "model/ffn_moe.h"

namespace mohge {

std::unique_ptr<Ffn> make_ffn(const ModelConfig& c, int layer, ParamTable& params,
                              const std::string& prefix, const ParallelGroups* groups) {
  if (c.layer_is_moe(layer))
    return std::make_unique<MoeFfn>(c, params, prefix, groups ? groups->expert : nullptr,
                                    groups ? groups->world : nullptr);
  return std::make_unique<DenseFfn>(c, c.intermediate_size, params, prefix);
}

}  // namespace mohge
