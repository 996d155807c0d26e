#include "arch/validate.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "arch/network.hpp"

namespace tessera::arch {
namespace {

class Checker {
 public:
  Checker(const ConfigNode& root, std::vector<Problem>& problems)
      : root_(root), problems_(problems) {}

  // Reports `message` at the key `path` (its line when the key is in the document).
  void fail(const std::string& path, const std::string& message) {
    const ConfigNode* n = root_.find_path(path);
    // An absent key (defaulted) is reported at its nearest present ancestor.
    std::string p = path;
    while (n == nullptr && !p.empty()) {
      size_t dot = p.rfind('.');
      p = dot == std::string::npos ? "" : p.substr(0, dot);
      n = p.empty() ? &root_ : root_.find_path(p);
    }
    problems_.push_back({n ? n->loc : root_.loc, path, message});
  }

  void require(bool ok, const std::string& path, const std::string& message) {
    if (!ok) fail(path, message);
  }

 private:
  const ConfigNode& root_;
  std::vector<Problem>& problems_;
};

bool divides(double whole, double part) {
  if (part <= 0) return false;
  const double q = whole / part;
  return std::fabs(q - std::round(q)) < 1e-9;
}

std::string fmt(double v, Dim d) { return format_quantity(v, d); }

}  // namespace

double min_sram_for_array(const SystolicParams& sa) {
  const double r = double(sa.rows), c = double(sa.cols);
  return double(sa.count) * (2 * (r * c * 2 + r * r * 2) + r * c * 4);
}

void validate(const Arch& a, const ConfigNode& root, std::vector<Problem>& problems) {
  Checker check(root, problems);
  const ChipParams& chip = a.chip;
  const TileParams& tile = chip.tile;
  const int64_t tiles = a.tiles();

  // System
  const SystemParams& sys = a.system;
  const std::string links = too_few_links(sys);
  check.require(links.empty(), "system.link.count", links);
  if (sys.domain() < sys.chips) {
    const std::string n = std::to_string(sys.chips), d = std::to_string(sys.domain());
    check.require(sys.chips % sys.domain() == 0, "system.scale_out.domain",
                  "domains of " + d + " chips do not divide the system's " + n);
    check.require(sys.scale_out.count >= 1, "system.scale_out.count",
                  n + " chips in domains of " + d + " need at least one scale-out link per chip");
    check.require(sys.scale_out.bandwidth > 0, "system.scale_out.bandwidth",
                  n + " chips in domains of " + d + " need a scale-out bandwidth");
  }

  const ParallelismParams& par = sys.parallelism;
  const std::string n = std::to_string(sys.chips);
  if (par.tp > 0 && par.pp > 0) {
    check.require(par.tp * par.pp == sys.chips, "system.parallelism.tp",
                  "tp " + std::to_string(par.tp) + " x pp " + std::to_string(par.pp) + " = " +
                      std::to_string(par.tp * par.pp) + " chips, not the system's " + n);
  } else if (par.tp > 0) {
    check.require(sys.chips % par.tp == 0, "system.parallelism.tp",
                  "tp " + std::to_string(par.tp) + " does not divide the system's " + n + " chips");
  } else if (par.pp > 0) {
    check.require(sys.chips % par.pp == 0, "system.parallelism.pp",
                  "pp " + std::to_string(par.pp) + " does not divide the system's " + n + " chips");
  }
  const int64_t stage_chips = par.tp > 0 ? par.tp : par.pp > 0 ? sys.chips / par.pp : sys.chips;
  check.require(par.ep == 0 || stage_chips % par.ep == 0, "system.parallelism.ep",
                "ep " + std::to_string(par.ep) + " does not divide the " + std::to_string(stage_chips) +
                    " chips of a pipeline stage (tp)");

  // Chip
  check.require(tiles % chip.cluster_size == 0, "chip.cluster_size",
                "cluster size " + std::to_string(chip.cluster_size) + " does not divide the " +
                    std::to_string(tiles) + " tiles of the mesh");

  // Systolic array
  const SystolicParams& sa = tile.systolic;
  check.require(!sa.macs_per_cycle.values.empty(), "chip.tile.systolic.macs_per_cycle",
                "the array supports no dtype");
  for (const auto& [dtype, macs] : sa.macs_per_cycle.values) {
    const std::string path = "chip.tile.systolic.macs_per_cycle." + dtype;
    check.require(divides(macs, double(sa.rows * sa.cols)), path,
                  "MACs per cycle (" + fmt(macs, Dim::Count) + ") must be a multiple of rows*cols (" +
                      std::to_string(sa.rows * sa.cols) + ")");
    check.require(a.power.mac_energy.has(dtype), "power.mac_energy." + dtype,
                  "the array supports " + dtype + " but its MAC energy is not given");
  }

  // Tile SRAM
  const SramParams& sram = tile.sram;
  const double need = min_sram_for_array(sa);
  check.require(sram.capacity >= need, "chip.tile.sram.capacity",
                "SRAM of " + fmt(sram.capacity, Dim::Bytes) + " cannot hold one double-buffered " +
                    std::to_string(sa.rows) + "x" + std::to_string(sa.cols) +
                    " array tile's operands (needs " + fmt(need, Dim::Bytes) + ")");
  check.require(divides(sram.bytes_per_cycle, double(sram.banks)), "chip.tile.sram.banks",
                std::to_string(sram.banks) + " banks do not divide the port width of " +
                    fmt(sram.bytes_per_cycle, Dim::Bytes) + " per cycle");

  // Shared memory
  check.require(divides(chip.shared_memory.capacity, double(chip.shared_memory.banks)),
                "chip.shared_memory.banks", "banks do not divide the capacity");
  check.require(chip.launch.gap <= 1e-3, "chip.launch.gap", "a launch gap of at most 1 ms");
  check.require(chip.launch.host <= 1e-3, "chip.launch.host", "a host time per kernel of at most 1 ms");
  check.require(chip.shared_memory.hbm_cache <= 1, "chip.shared_memory.hbm_cache",
                "a share of the capacity, at most 1");
  check.require(chip.shared_memory.hbm_cache == 0 || chip.shared_memory.scope == SharedScope::Chip,
                "chip.shared_memory.hbm_cache", "only a chip-wide shared memory caches HBM");

  // HBM
  const HbmParams& h = a.hbm;
  const int64_t pcs = a.hbm_pseudo_channels();
  check.require(h.bus_width % h.pseudo_channels == 0, "hbm.pseudo_channels",
                std::to_string(h.pseudo_channels) + " pseudo-channels do not divide the " +
                    std::to_string(h.bus_width) + "-bit channel");
  const double burst_bytes = double(h.bus_width / h.pseudo_channels) * double(h.timing.burst_length) / 8;
  check.require(divides(h.capacity, double(pcs)), "hbm.capacity",
                "capacity " + fmt(h.capacity, Dim::Bytes) + " is not divisible by the " +
                    std::to_string(pcs) + " pseudo-channels");
  check.require(divides(h.row_size, burst_bytes), "hbm.row_size",
                "row size must be a multiple of the " + fmt(burst_bytes, Dim::Bytes) + " burst");
  check.require(divides(h.interleave, burst_bytes), "hbm.interleave",
                "interleave must be a multiple of the " + fmt(burst_bytes, Dim::Bytes) + " burst");
  check.require(h.capacity / double(pcs) >= h.row_size * double(h.banks), "hbm.capacity",
                "capacity per pseudo-channel is smaller than one row in every bank");
  check.require(h.timing.tREFI > h.timing.tRFC, "hbm.timing.tREFI",
                "refresh interval must be longer than the refresh itself (tRFC)");
  check.require(h.timing.tRAS >= h.timing.tRCD, "hbm.timing.tRAS", "tRAS must be at least tRCD");

  // Power
  check.require(a.power.static_power < a.power.tdp, "power.static_power",
                "static power (" + fmt(a.power.static_power, Dim::Power) + ") must be below the TDP (" +
                    fmt(a.power.tdp, Dim::Power) + ")");
  check.require(a.power.limit_window <= 10, "power.limit_window", "a power limit's window of at most 10 s");
  // Below the TDP as well as a higher limit: GEMM plans weigh their energy over the TDP's headroom.
  const double active_bound = std::min(a.power.tdp, a.power.power_limit());
  check.require(a.power.static_power + a.power.active_power < active_bound, "power.active_power",
                "active power (" + fmt(a.power.active_power, Dim::Power) +
                    ") with the static power must be below the TDP and the power limit (" +
                    fmt(active_bound, Dim::Power) + ")");
  check.require(a.power.limit == 0 || a.power.limit > a.power.static_power, "power.limit",
                "a power limit (" + fmt(a.power.limit, Dim::Power) + ") must be above the static power (" +
                    fmt(a.power.static_power, Dim::Power) + ")");

  // Cost
  check.require(a.cost.die_area.has_value() || a.cost.has_area_model, "cost.die_area",
                "give the die area or a cost.area model to estimate it");
  if (a.kind == ChipKind::Gpu) {
    check.require(a.cost.purchase_price.has_value(), "cost.purchase_price",
                  "a GPU is bought as a product: give its purchase price");
  }
}

}  // namespace tessera::arch
