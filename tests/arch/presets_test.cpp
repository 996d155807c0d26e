// Every preset loads and its derived peaks reproduce the published figures of
// ../shared/reference/hardware.md within 2%.
#include <gtest/gtest.h>

#include "arch/derived.hpp"
#include "arch/describe.hpp"
#include "arch/loader.hpp"

namespace tessera::arch {
namespace {

struct Published {
  const char* preset;
  double bf16_flops;
  double hbm_bandwidth;
  double hbm_capacity;
  double fp8_flops;  // 0 when not published
};

// Figures copied from ../shared/reference/hardware.md, not from the presets.
const Published kPublished[] = {
    {"maia100-class", 0.8e15, 1.8e12, 64e9, 0},
    {"tpu-v4-class", 275e12, 1.2e12, 32.0 * (1ull << 30), 0},
    {"a100-sxm", 312e12, 2.039e12, 80e9, 0},
    {"h100-sxm", 989e12, 3.35e12, 80e9, 1979e12},
    {"h200-sxm", 989e12, 4.8e12, 141e9, 1979e12},
    {"b200", 2.25e15, 8e12, 180e9, 4.5e15},
    {"mi300x", 1307e12, 5.3e12, 192e9, 2615e12},
    // Systems: their chips' figures.
    {"hgx-h100x8", 989e12, 3.35e12, 80e9, 1979e12},
    {"hgx-h100x16", 989e12, 3.35e12, 80e9, 1979e12},
    {"hgx-h200x8", 989e12, 4.8e12, 141e9, 1979e12},
    {"hgx-b200x8", 2.25e15, 8e12, 180e9, 4.5e15},
    {"mi300x-x8", 1307e12, 5.3e12, 192e9, 2615e12},
    {"maia100-server", 0.8e15, 1.8e12, 64e9, 0},
    {"maia100-x8", 0.8e15, 1.8e12, 64e9, 0},
    {"maia100-x16", 0.8e15, 1.8e12, 64e9, 0},
    {"maia100-x32", 0.8e15, 1.8e12, 64e9, 0},
};

// Systems of several chips: chips, chips per scale-up domain, and per chip the scale-up and
// scale-out bandwidth in one direction (hardware.md: NVLink 4 900 GB/s and NVLink 5 1.8 TB/s
// both ways; Infinity Fabric 7 links, ~896 GB/s both ways; Maia 100 3 x 400 GbE to each of 3
// peers and 3 x 400 GbE to the switch tier; ConnectX-7 400 Gb/s per GPU).
struct PublishedSystem {
  const char* preset;
  int64_t chips, domain;
  double scale_up, scale_out;
};
const PublishedSystem kSystems[] = {
    {"hgx-h100x8", 8, 8, 450e9, 0},       {"hgx-h100x16", 16, 8, 450e9, 50e9},
    {"hgx-h200x8", 8, 8, 450e9, 0},       {"hgx-b200x8", 8, 8, 900e9, 0},
    {"mi300x-x8", 8, 8, 448e9, 0},        {"maia100-server", 4, 4, 450e9, 150e9},
    {"maia100-x8", 8, 4, 450e9, 150e9},   {"maia100-x16", 16, 4, 450e9, 150e9},
    {"maia100-x32", 32, 4, 450e9, 150e9},
};

TEST(Presets, SystemsHavePublishedLinks) {
  for (const PublishedSystem& p : kSystems) {
    SCOPED_TRACE(p.preset);
    const Arch a = load_arch(p.preset);
    EXPECT_EQ(a.system.chips, p.chips);
    EXPECT_EQ(a.system.domain(), p.domain);
    EXPECT_NEAR(double(a.system.link.count) * a.system.link.bandwidth / p.scale_up, 1.0, 0.02);
    if (p.scale_out > 0) {
      EXPECT_NEAR(double(a.system.scale_out.count) * a.system.scale_out.bandwidth / p.scale_out, 1.0, 0.02);
    }
  }
}

TEST(Presets, AllPresetsArePresentAndLoad) {
  std::vector<std::string> names = preset_names();
  EXPECT_EQ(names.size(), std::size(kPublished));
  for (const Published& p : kPublished) {
    EXPECT_NE(std::find(names.begin(), names.end(), p.preset), names.end()) << p.preset;
  }
  for (const std::string& name : names) {
    EXPECT_NO_THROW(load_arch(name)) << name;
  }
}

TEST(Presets, DerivedPeaksMatchPublishedWithinTwoPercent) {
  for (const Published& p : kPublished) {
    SCOPED_TRACE(p.preset);
    const Derived d = derive(load_arch(p.preset));
    EXPECT_NEAR(d.peak_flops.at("bf16") / p.bf16_flops, 1.0, 0.02);
    EXPECT_NEAR(d.hbm_bandwidth / p.hbm_bandwidth, 1.0, 0.02);
    EXPECT_EQ(d.hbm_capacity, p.hbm_capacity);
    if (p.fp8_flops > 0) {
      EXPECT_NEAR(d.peak_flops.at("fp8") / p.fp8_flops, 1.0, 0.02);
    }
  }
}

TEST(Presets, Maia100HasPublishedHierarchy) {
  const Arch a = load_arch("maia100-class");
  const Derived d = derive(a);
  EXPECT_EQ(d.tiles, 64);
  EXPECT_EQ(d.clusters, 16);
  EXPECT_EQ(d.sram_capacity, 500e6);                   // 500 MB
  EXPECT_EQ(d.link_bandwidth, 600e9);                  // 12 x 400 GbE = 600 GB/s
}

TEST(Presets, H200ExtendsH100) {
  const Arch h100 = load_arch("h100-sxm");
  const Arch h200 = load_arch("h200-sxm");
  EXPECT_EQ(h200.name, "h200-sxm");
  EXPECT_EQ(h200.chip.clock, h100.chip.clock);
  EXPECT_EQ(h200.tiles(), 132);
  std::set<std::string> changed;
  for (const DiffRow& r : diff(h100, h200)) changed.insert(r.path);
  EXPECT_TRUE(changed.count("hbm.stacks"));
  EXPECT_TRUE(changed.count("hbm.capacity"));
  EXPECT_FALSE(changed.count("chip.clock"));
}

TEST(Presets, NocBisectionOfMesh) {
  // 8x8 mesh: a cut between columns 3 and 4 crosses 8 links, each 128 B x 1.53 GHz per
  // direction, counted both ways.
  const Derived d = derive(load_arch("maia100-class"));
  EXPECT_DOUBLE_EQ(d.noc_bisection_bandwidth, 2 * 8 * 128 * 1.53e9);
}

TEST(Presets, JsonHasDerivedFiguresInSiUnits) {
  const Arch a = load_arch("h100-sxm");
  nlohmann::json j = to_json(a);
  EXPECT_EQ(j["hbm"]["capacity"].get<double>(), 80e9);
  EXPECT_EQ(j["chip"]["tile"]["systolic"]["dataflow"], "os");
  nlohmann::json dj = to_json(derive(a));
  for (const char* key : {"peak_flops", "hbm_bandwidth", "hbm_capacity", "sram_capacity",
                          "die_cost_usd", "chip_cost_usd", "tco_usd_per_hour"}) {
    EXPECT_TRUE(dj.contains(key)) << key;
  }
}

TEST(Presets, FingerprintChangesWithAnyParameter) {
  const uint64_t base = fingerprint(load_arch("maia100-class"));
  EXPECT_EQ(base, fingerprint(load_arch("maia100-class")));
  EXPECT_NE(base, fingerprint(load_arch("maia100-class", {"hbm.timing.tRCD=15ns"})));
}

// No preset's on-chip network starves its HBM: the links that carry HBM data to the tiles
// (crossbar: every tile's port; mesh: the edge routers' links into each row, where the
// pseudo-channels attach) add up to at least the HBM bandwidth.
TEST(Presets, OnChipNetworkCarriesTheHbmBandwidth) {
  for (const std::string& name : preset_names()) {
    const Arch a = load_arch(name);
    const double link = a.chip.noc.link_width * a.chip.noc.clock;
    const double entry = a.chip.noc.topology == NocTopology::Crossbar
                             ? double(a.tiles()) * link
                             : double(a.chip.mesh.rows * std::min<int64_t>(a.chip.mesh.cols, 2)) * link;
    EXPECT_GE(entry, derive(a).hbm_bandwidth) << name;
  }
}

}  // namespace
}  // namespace tessera::arch
