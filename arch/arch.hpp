// The architecture description: one schema for in-house accelerators and GPUs. Each struct
// lists its parameters once in visit(); loading, validation messages, `tessera arch schema`,
// `arch show` and `arch diff` are all produced from those lists.
//
// Every value is held in SI base units (bytes, bytes/s, Hz, seconds, watts, joules, USD, mm^2).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "arch/schema.hpp"

namespace tessera::arch {

enum class ChipKind { Accelerator, Gpu };
enum class Topology { Ring, Torus2D, Torus3D, FullyConnected, Switch };
enum class NocTopology { Mesh, Crossbar };
enum class Dataflow { WeightStationary, OutputStationary };
enum class SharedScope { Cluster, Chip };

template <>
struct EnumTraits<ChipKind> {
  static constexpr std::array<std::pair<ChipKind, std::string_view>, 2> names = {
      {{ChipKind::Accelerator, "accelerator"}, {ChipKind::Gpu, "gpu"}}};
};
template <>
struct EnumTraits<Topology> {
  static constexpr std::array<std::pair<Topology, std::string_view>, 5> names = {
      {{Topology::Ring, "ring"},
       {Topology::Torus2D, "torus2d"},
       {Topology::Torus3D, "torus3d"},
       {Topology::FullyConnected, "fully_connected"},
       {Topology::Switch, "switch"}}};
};
template <>
struct EnumTraits<NocTopology> {
  static constexpr std::array<std::pair<NocTopology, std::string_view>, 2> names = {
      {{NocTopology::Mesh, "mesh"}, {NocTopology::Crossbar, "crossbar"}}};
};
template <>
struct EnumTraits<Dataflow> {
  static constexpr std::array<std::pair<Dataflow, std::string_view>, 2> names = {
      {{Dataflow::WeightStationary, "ws"}, {Dataflow::OutputStationary, "os"}}};
};
template <>
struct EnumTraits<SharedScope> {
  static constexpr std::array<std::pair<SharedScope, std::string_view>, 2> names = {
      {{SharedScope::Cluster, "cluster"}, {SharedScope::Chip, "chip"}}};
};

struct LinkParams {
  int64_t count = 0;
  double bandwidth = 0;  // per link, per direction
  double latency = 0;
  double energy_per_bit = 0;

  template <class V>
  void visit(V& v) {
    v.field("count", count, {"chip-to-chip links per chip", Dim::Count, std::nullopt, {}, Bound::NonNegative});
    v.field("bandwidth", bandwidth, {"bandwidth of one link in one direction", Dim::Bandwidth});
    v.field("latency", latency, {"one-way latency of a link (SerDes, switch, wire)", Dim::Time});
    v.field("energy_per_bit", energy_per_bit,
            {"energy to move one bit over a link", Dim::Energy, std::nullopt, {}, Bound::NonNegative});
  }
};

// The network between scale-up domains (servers, NVLink domains): every chip's own links to
// one switch that all domains share.
struct ScaleOutParams {
  int64_t domain = 0;  // chips per scale-up domain; 0: every chip is in one
  int64_t count = 0;
  double bandwidth = 0;  // per link, per direction
  double latency = 0;    // end to end, through the switch
  double energy_per_bit = 0;

  template <class V>
  void visit(V& v) {
    v.field("domain", domain,
            {"chips per scale-up domain, joined by `topology`; 0: every chip is in one", Dim::Count, 0.0, {},
             Bound::NonNegative});
    v.field("count", count, {"scale-out links per chip", Dim::Count, 0.0, {}, Bound::NonNegative});
    v.field("bandwidth", bandwidth,
            {"bandwidth of one scale-out link in one direction", Dim::Bandwidth, 0.0, {}, Bound::NonNegative});
    v.field("latency", latency, {"one-way latency between domains, through the switch", Dim::Time, 0.0, {},
                                 Bound::NonNegative});
    v.field("energy_per_bit", energy_per_bit,
            {"energy to move one bit over a scale-out link", Dim::Energy, 0.0, {}, Bound::NonNegative});
  }
};

// A chip's link to its host's memory (PCIe), which serving swaps preempted KV caches over.
struct HostParams {
  double bandwidth = 0;  // per chip, per direction
  double latency = 0;
  double energy_per_bit = 0;
  double memory = 0;  // host memory a chip may swap KV caches into

  template <class V>
  void visit(V& v) {
    v.field("bandwidth", bandwidth, {"a chip's host link bandwidth in one direction; 0: no host link", Dim::Bandwidth,
                                     0.0, {}, Bound::NonNegative});
    v.field("latency", latency, {"latency of one copy over the host link", Dim::Time, 0.0, {}, Bound::NonNegative});
    v.field("energy_per_bit", energy_per_bit,
            {"energy to move one bit over the host link", Dim::Energy, 0.0, {}, Bound::NonNegative});
    v.field("memory", memory, {"host memory a chip may swap KV caches into", Dim::Bytes, 0.0, {}, Bound::NonNegative});
  }
};

// How a model is mapped onto the system's chips: tensor parallelism within groups of `tp`
// chips, a pipeline of `pp` such groups (tp x pp = chips). 0: chosen by a search for the
// fastest step (or from the other when one is given).
struct ParallelismParams {
  int64_t tp = 0;
  int64_t pp = 0;
  int64_t ep = 0;

  template <class V>
  void visit(V& v) {
    v.field("tp", tp, {"chips a model's layers are split over by tensor parallelism; 0: chosen", Dim::Count, 0.0, {},
                       Bound::NonNegative});
    v.field("pp", pp, {"pipeline stages of a model's layers; 0: chosen", Dim::Count, 0.0, {}, Bound::NonNegative});
    v.field("ep", ep, {"groups of a stage's chips an MoE layer's experts are dealt over (each group holds experts / ep "
                       "of them, split over its chips; 1: every chip a slice of every expert); 0: chosen", Dim::Count,
                       0.0, {}, Bound::NonNegative});
  }
};

struct SystemParams {
  int64_t chips = 1;
  Topology topology = Topology::Switch;
  LinkParams link;
  ScaleOutParams scale_out;
  HostParams host;
  ParallelismParams parallelism;

  template <class V>
  void visit(V& v) {
    v.field("chips", chips, {"number of chips in the system", Dim::Count, 1.0});
    v.choice("topology", topology, {"how the chips of a scale-up domain are connected", Dim::Count, std::nullopt, "switch"});
    v.group("link", "chip-to-chip links within a scale-up domain", [&] { link.visit(v); });
    v.group("scale_out", "the network between scale-up domains", [&] { scale_out.visit(v); });
    v.group("host", "each chip's link to host memory (PCIe)", [&] { host.visit(v); });
    v.group("parallelism", "how a model is mapped onto the chips", [&] { parallelism.visit(v); });
  }
  // Chips per scale-up domain.
  int64_t domain() const { return scale_out.domain > 0 ? std::min(scale_out.domain, chips) : chips; }
  // Pipeline stages `parallelism` fixes (from tp when only it is given); 1 when it leaves them open.
  int64_t pipeline_stages() const {
    return parallelism.pp > 0 ? parallelism.pp : parallelism.tp > 0 ? chips / parallelism.tp : 1;
  }
};

struct MeshParams {
  int64_t cols = 0;
  int64_t rows = 0;

  template <class V>
  void visit(V& v) {
    v.field("cols", cols, {"tile columns of the on-chip mesh (X)"});
    v.field("rows", rows, {"tile rows of the on-chip mesh (Y)"});
  }
};

struct SharedMemoryParams {
  SharedScope scope = SharedScope::Cluster;
  double capacity = 0;  // per instance
  int64_t banks = 0;
  double bandwidth = 0;  // per instance
  double hbm_cache = 0;  // share of a chip-wide instance that also caches HBM (0..1)

  template <class V>
  void visit(V& v) {
    v.choice("scope", scope,
             {"one instance per cluster (cluster L2) or one for the chip (GPU L2)", Dim::Count,
              std::nullopt, "cluster"});
    v.field("capacity", capacity, {"capacity of one instance", Dim::Bytes});
    v.field("banks", banks, {"independently accessible banks of one instance"});
    v.field("bandwidth", bandwidth, {"read+write bandwidth of one instance", Dim::Bandwidth});
    v.field("hbm_cache", hbm_cache,
            {"share of a chip-wide instance's capacity that also caches what tiles read from and write to HBM, as a "
             "GPU's L2 does (reads that hit are served at its bandwidth), 0..1; 0: not a cache",
             Dim::Ratio, 0.0, {}, Bound::NonNegative});
  }
};

struct NocParams {
  NocTopology topology = NocTopology::Mesh;
  double link_width = 0;  // bytes per NoC cycle per direction
  int64_t hop_cycles = 0;
  double clock = 0;

  template <class V>
  void visit(V& v) {
    v.choice("topology", topology,
             {"mesh (XY routing between neighbours) or crossbar (one port per node)", Dim::Count,
              std::nullopt, "mesh"});
    v.field("link_width", link_width,
            {"bytes a link (or crossbar port) carries per NoC cycle in each direction", Dim::Bytes});
    v.field("hop_cycles", hop_cycles, {"router+link latency of one hop, in NoC cycles"});
    v.field("clock", clock, {"NoC clock", Dim::Frequency});
  }
};

struct SystolicParams {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t count = 1;
  Dataflow dataflow = Dataflow::WeightStationary;
  DtypeTable macs_per_cycle;  // per array

  template <class V>
  void visit(V& v) {
    v.field("rows", rows, {"PE rows of one array (the reduction dimension K for ws)"});
    v.field("cols", cols, {"PE columns of one array (the output dimension N)"});
    v.field("count", count, {"arrays per tile, working in lockstep on one MATMUL", Dim::Count, 1.0});
    v.choice("dataflow", dataflow,
             {"ws (weight-stationary) or os (output-stationary)"});
    v.table("macs_per_cycle", macs_per_cycle,
            {"multiply-accumulates per cycle of one array, by input dtype; a multiple of "
             "rows*cols (packed lanes). A missing dtype is unsupported",
             Dim::Count});
  }
};

// Per-op timing of the vector unit, in cycles and elements per lane per cycle.
struct VectorOpTiming {
  int64_t latency = 0;
  double throughput = 0;
};

// The vector unit's op classes, with default latency (cycles) and throughput (elements per lane
// per cycle). Transcendentals are slower, as on real vector units.
struct VectorOpDefault {
  std::string_view name;
  int64_t latency;
  double throughput;
};
inline constexpr std::array<VectorOpDefault, 14> kVectorOps = {{
    {"add", 4, 1.0},        {"sub", 4, 1.0},        {"mul", 4, 1.0},
    {"max", 4, 1.0},        {"fma", 4, 1.0},        {"cast", 4, 1.0},
    {"copy", 2, 1.0},       {"reduce_sum", 8, 1.0}, {"reduce_max", 8, 1.0},
    {"exp", 16, 0.5},       {"rsqrt", 16, 0.5},     {"reciprocal", 16, 0.5},
    {"silu", 20, 0.25},     {"gelu", 24, 0.25},
}};

struct VectorParams {
  int64_t lanes = 0;
  std::array<VectorOpTiming, kVectorOps.size()> ops{};

  const VectorOpTiming& op(std::string_view name) const;  // throws for an unknown name

  template <class V>
  void visit(V& v) {
    v.field("lanes", lanes, {"elements the vector unit processes per cycle at throughput 1"});
    v.group("ops", "per-op latency and throughput", [&] {
      for (size_t i = 0; i < kVectorOps.size(); ++i) {
        const VectorOpDefault& d = kVectorOps[i];
        v.group(d.name, "", [&] {
          v.field("latency", ops[i].latency,
                  {"cycles from issue to first result", Dim::Count, double(d.latency)});
          v.field("throughput", ops[i].throughput,
                  {"elements per lane per cycle", Dim::Ratio, d.throughput});
        });
      }
    });
  }
};

struct DmaParams {
  int64_t engines = 0;
  int64_t queue_depth = 0;
  double bytes_per_cycle = 0;  // per engine

  template <class V>
  void visit(V& v) {
    v.field("engines", engines, {"DMA engines per tile"});
    v.field("queue_depth", queue_depth, {"transfers one engine keeps in flight"});
    v.field("bytes_per_cycle", bytes_per_cycle, {"bytes one engine moves per core cycle", Dim::Bytes});
  }
};

struct SramParams {
  double capacity = 0;
  int64_t banks = 0;
  int64_t ports = 0;
  double bytes_per_cycle = 0;  // per port

  template <class V>
  void visit(V& v) {
    v.field("capacity", capacity, {"tile-local scratchpad capacity", Dim::Bytes});
    v.field("banks", banks, {"banks; bytes_per_cycle / banks is the bank width"});
    v.field("ports", ports, {"independent read/write ports shared by DMA and the vector unit"});
    v.field("bytes_per_cycle", bytes_per_cycle, {"bytes one port moves per core cycle", Dim::Bytes});
  }
};

struct TileParams {
  SystolicParams systolic;
  VectorParams vector;
  DmaParams dma;
  SramParams sram;

  template <class V>
  void visit(V& v) {
    v.group("systolic", "the matrix unit", [&] { systolic.visit(v); });
    v.group("vector", "the vector unit", [&] { vector.visit(v); });
    v.group("dma", "the DMA engines", [&] { dma.visit(v); });
    v.group("sram", "the tile's scratchpad", [&] { sram.visit(v); });
  }
};

// How a chip runs a program that is a sequence of kernels (a GPU: each kernel a grid launched
// after the previous one ends). Accelerators whose tiles run their own instruction streams
// leave both 0. See the isa barrier's `kernel` flag.
struct LaunchParams {
  double gap = 0;   // seconds from one kernel's end to the next's start, launched from a CUDA graph
  double host = 0;  // seconds of host time to issue one kernel under eager launch

  template <class V>
  void visit(V& v) {
    v.field("gap", gap,
            {"time from one kernel's end to the next kernel's start when the kernels are launched back to back "
             "(a CUDA graph): grid launch, block scheduling and ramp; 0: no kernels",
             Dim::Time, 0.0, {}, Bound::NonNegative});
    v.field("host", host,
            {"host time to issue one kernel under eager launch (framework, dispatcher and driver): the device "
             "cannot start kernel n before n + 1 of these have passed; 0: the host keeps ahead",
             Dim::Time, 0.0, {}, Bound::NonNegative});
  }
};

struct ChipParams {
  double clock = 0;
  MeshParams mesh;
  int64_t cluster_size = 1;
  SharedMemoryParams shared_memory;
  NocParams noc;
  TileParams tile;
  LaunchParams launch;

  template <class V>
  void visit(V& v) {
    v.field("clock", clock, {"core clock of the tiles", Dim::Frequency});
    v.group("mesh", "placement of tiles on a 2D grid; tiles = cols * rows", [&] { mesh.visit(v); });
    v.field("cluster_size", cluster_size, {"tiles per cluster", Dim::Count, 1.0});
    v.group("shared_memory", "cluster or chip-wide SRAM (L2)", [&] { shared_memory.visit(v); });
    v.group("noc", "the on-chip network", [&] { noc.visit(v); });
    v.group("tile", "one tile (all tiles are identical)", [&] { tile.visit(v); });
    v.group("launch", "kernel launch, for chips that run programs as kernels (GPUs)", [&] { launch.visit(v); });
  }
};

struct HbmTiming {
  double tRCD = 0, tRP = 0, tCL = 0, tRAS = 0, tRFC = 0, tREFI = 0, tWTR = 0, tRTW = 0;
  int64_t burst_length = 0;

  template <class V>
  void visit(V& v) {
    v.field("tRCD", tRCD, {"activate to column command", Dim::Time});
    v.field("tRP", tRP, {"precharge to activate", Dim::Time});
    v.field("tCL", tCL, {"read column command to first data", Dim::Time});
    v.field("tRAS", tRAS, {"activate to precharge (minimum row-open time)", Dim::Time});
    v.field("tRFC", tRFC, {"duration of an all-bank refresh", Dim::Time});
    v.field("tREFI", tREFI, {"interval between refreshes", Dim::Time});
    v.field("tWTR", tWTR, {"bus turnaround from write data to a read", Dim::Time, 7.5e-9});
    v.field("tRTW", tRTW, {"bus turnaround from read data to a write", Dim::Time, 3e-9});
    v.field("burst_length", burst_length, {"beats per column access of a pseudo-channel"});
  }
};

struct HbmParams {
  std::string generation;
  int64_t stacks = 0;
  int64_t channels_per_stack = 0;
  int64_t pseudo_channels = 1;
  int64_t banks = 0;
  double row_size = 0;
  double data_rate = 0;   // bits/s per pin
  int64_t bus_width = 0;  // bits per channel
  double capacity = 0;
  double energy_per_bit = 0;
  double interleave = 0;
  HbmTiming timing;

  template <class V>
  void visit(V& v) {
    v.field("generation", generation, {"memory generation, for reports (HBM2E, HBM3, HBM3E)", Dim::Count, std::nullopt, "HBM"});
    v.field("stacks", stacks, {"HBM stacks per chip"});
    v.field("channels_per_stack", channels_per_stack, {"independent channels per stack"});
    v.field("pseudo_channels", pseudo_channels, {"pseudo-channels per channel", Dim::Count, 1.0});
    v.field("banks", banks, {"banks per pseudo-channel"});
    v.field("row_size", row_size, {"row (page) size of one bank of a pseudo-channel", Dim::Bytes});
    v.field("data_rate", data_rate, {"data rate per pin", Dim::BitRate});
    v.field("bus_width", bus_width, {"data bus width of one channel, in bits"});
    v.field("capacity", capacity, {"total capacity of all stacks", Dim::Bytes});
    v.field("energy_per_bit", energy_per_bit,
            {"device+PHY energy per bit transferred", Dim::Energy, std::nullopt, {}, Bound::NonNegative});
    v.field("interleave", interleave,
            {"bytes mapped to one pseudo-channel before moving to the next", Dim::Bytes, 256.0});
    v.group("timing", "DRAM timing parameters", [&] { timing.visit(v); });
  }
};

struct PowerParams {
  DtypeTable mac_energy;
  double sram_read_energy = 0;   // per byte
  double sram_write_energy = 0;  // per byte
  double shared_memory_energy = 0;  // per byte read or written
  double noc_energy = 0;         // per bit per hop
  double vector_energy = 0;      // per element operation
  double static_power = 0;
  double active_power = 0;  // on top of static_power while the chip runs a program
  double tdp = 0;
  double limit = 0;  // 0: the TDP
  double limit_window = 0;  // seconds the power controller averages over; 0: each operator's own

  // The power the clock is lowered to hold.
  double power_limit() const { return limit > 0 ? limit : tdp; }

  template <class V>
  void visit(V& v) {
    v.table("mac_energy", mac_energy,
            {"energy of one multiply-accumulate, by input dtype", Dim::Energy});
    v.field("sram_read_energy", sram_read_energy, {"energy per byte read from tile SRAM", Dim::Energy});
    v.field("sram_write_energy", sram_write_energy, {"energy per byte written to tile SRAM", Dim::Energy});
    v.field("shared_memory_energy", shared_memory_energy,
            {"energy per byte read or written in shared (L2) memory", Dim::Energy});
    v.field("noc_energy", noc_energy, {"energy per bit per NoC hop", Dim::Energy});
    v.field("vector_energy", vector_energy, {"energy per vector element operation", Dim::Energy});
    v.field("static_power", static_power, {"leakage and always-on power of one chip", Dim::Power});
    v.field("active_power", active_power,
            {"power of one chip while it runs a program, on top of the static power (clocks, caches, "
             "interconnect and memory PHYs out of idle); it follows the clock as the events' energy does",
             Dim::Power, 0.0, {}, Bound::NonNegative});
    v.field("tdp", tdp, {"thermal design power of one chip", Dim::Power});
    v.field("limit", limit, {"power one chip's clock is lowered to hold over a step (a power cap); 0: the TDP",
                             Dim::Power, 0.0, {}, Bound::NonNegative});
    v.field("limit_window", limit_window,
            {"time the power controller averages the power over: a run that starts from idle holds its "
             "clock until that window's average reaches the limit; 0: each operator is held to the limit",
             Dim::Time, 0.0, {}, Bound::NonNegative});
  }
};

// Component areas for estimating the die when its area is not given.
struct AreaModel {
  double sram_mm2_per_mib = 0;
  double mac_mm2 = 0;  // per bf16 MAC, including its share of array wiring
  double hbm_phy_mm2 = 0;  // per stack interface
  double other_mm2 = 0;    // vector units, NoC, control, I/O

  template <class V>
  void visit(V& v) {
    v.field("sram_mm2_per_mib", sram_mm2_per_mib, {"area of 1 MiB of SRAM with its periphery", Dim::Area});
    v.field("mac_mm2", mac_mm2, {"area of one bf16 MAC of the matrix units", Dim::Area});
    v.field("hbm_phy_mm2", hbm_phy_mm2, {"area of one HBM stack's PHY", Dim::Area});
    v.field("other_mm2", other_mm2, {"everything else (vector units, NoC, control, I/O)", Dim::Area, 0.0, {}, Bound::NonNegative});
  }
};

struct CostParams {
  std::string process_node;
  std::optional<double> die_area;
  int64_t dies_per_chip = 1;
  bool has_area_model = false;
  AreaModel area;
  double wafer_price = 0;
  double wafer_diameter = 300;
  double defect_density = 0;
  double yield_alpha = 3;
  double packaging = 0;
  double hbm_price = 0;  // per byte
  double board_share = 0;
  std::optional<double> purchase_price;
  std::optional<double> cloud_price;  // per hour
  double amortization_years = 0;
  double electricity_price = 0;  // per joule
  double pue = 1;

  template <class V>
  void visit(V& v) {
    v.field("process_node", process_node, {"process node, for reports (N5, 4N, N7)", Dim::Count, std::nullopt, ""});
    v.field("die_area", die_area, {"area of one die; when absent it is estimated from cost.area", Dim::Area});
    v.field("dies_per_chip", dies_per_chip, {"compute dies in one package", Dim::Count, 1.0});
    v.optional_group("area", "component areas for estimating the die", has_area_model,
                     [&] { area.visit(v); });
    v.field("wafer_price", wafer_price, {"price of one processed wafer", Dim::Money});
    v.field("wafer_diameter", wafer_diameter, {"wafer diameter", Dim::Length, 300.0});
    v.field("defect_density", defect_density, {"defects per cm^2 (D0)", Dim::PerArea, std::nullopt, {}, Bound::NonNegative});
    v.field("yield_alpha", yield_alpha, {"clustering parameter of the negative-binomial yield model", Dim::Ratio, 3.0});
    v.field("packaging", packaging, {"packaging, interposer, test and assembly per chip", Dim::Money, std::nullopt, {}, Bound::NonNegative});
    v.field("hbm_price", hbm_price, {"HBM price per byte of capacity", Dim::MoneyPerByte, std::nullopt, {}, Bound::NonNegative});
    v.field("board_share", board_share,
            {"board, server and network share per chip", Dim::Money, std::nullopt, {}, Bound::NonNegative});
    v.field("purchase_price", purchase_price,
            {"price of one chip bought as a product; replaces the die, HBM and packaging costs", Dim::Money});
    v.field("cloud_price", cloud_price, {"cloud rental price per chip-hour", Dim::MoneyPerHour});
    v.field("amortization_years", amortization_years, {"straight-line depreciation period", Dim::Ratio});
    v.field("electricity_price", electricity_price, {"price of energy", Dim::MoneyPerEnergy});
    v.field("pue", pue, {"data-centre power usage effectiveness", Dim::Ratio});
  }
};

struct Arch {
  std::string name;
  std::string description;
  ChipKind kind = ChipKind::Accelerator;
  SystemParams system;
  ChipParams chip;
  HbmParams hbm;
  PowerParams power;
  CostParams cost;

  int64_t tiles() const { return chip.mesh.cols * chip.mesh.rows; }
  int64_t clusters() const { return tiles() / chip.cluster_size; }
  int64_t shared_memory_instances() const {
    return chip.shared_memory.scope == SharedScope::Cluster ? clusters() : 1;
  }
  int64_t hbm_pseudo_channels() const {
    return hbm.stacks * hbm.channels_per_stack * hbm.pseudo_channels;
  }

  template <class V>
  void visit(V& v) {
    v.field("name", name, {"name of the design (defaults to the preset or file name)", Dim::Count, std::nullopt, ""});
    v.field("description", description, {"one line about the design", Dim::Count, std::nullopt, ""});
    v.choice("kind", kind, {"accelerator or gpu"});
    v.group("system", "chips and chip-to-chip links", [&] { system.visit(v); });
    v.group("chip", "one chip", [&] { chip.visit(v); });
    v.group("hbm", "high-bandwidth memory of one chip", [&] { hbm.visit(v); });
    v.group("power", "energy per event, static power and TDP", [&] { power.visit(v); });
    v.group("cost", "die, memory, packaging and operating cost", [&] { cost.visit(v); });
  }
};

}  // namespace tessera::arch
