#include "compiler/target.hpp"

namespace tessera::compiler {

isa::Target target_for(const arch::Arch& a) {
  isa::Target t;
  t.name = a.name;
  t.chips = static_cast<uint32_t>(a.system.chips);
  t.tiles = static_cast<uint32_t>(a.tiles());
  t.sram_bytes = static_cast<uint64_t>(a.chip.tile.sram.capacity);
  t.shared_bytes = static_cast<uint64_t>(a.chip.shared_memory.capacity);
  t.hbm_bytes = static_cast<uint64_t>(a.hbm.capacity);
  for (int i = 1; i < isa::kDtypeCount; ++i) {
    const auto d = static_cast<isa::Dtype>(i);
    const std::string_view cls = isa::array_dtype_class(d);
    if (!cls.empty() && a.chip.tile.systolic.macs_per_cycle.has(cls)) t.matmul_dtypes.push_back(d);
  }
  return t;
}

}  // namespace tessera::compiler
