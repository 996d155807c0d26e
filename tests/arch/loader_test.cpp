// Loading descriptions: extends, overrides, JSON, and one test per kind of bad input, each
// checking that the message names the file, the line and the key path.
#include "arch/loader.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "arch/describe.hpp"

namespace tessera::arch {
namespace {

using ::testing::HasSubstr;

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tessera_loader_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::filesystem::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

  // Loads and returns the error message; fails the test if loading succeeds.
  std::string error_of(const std::string& path, const std::vector<std::string>& overrides = {}) {
    try {
      load_arch(path, overrides);
    } catch (const ArchError& e) {
      return e.what();
    }
    ADD_FAILURE() << "loading " << path << " succeeded";
    return "";
  }

  // maia100-class with the line containing `needle` removed.
  std::string maia_without(const std::string& needle) {
    std::string text(preset_text("maia100-class"));
    size_t at = text.find(needle);
    EXPECT_NE(at, std::string::npos);
    size_t start = text.rfind('\n', at) + 1;
    text.erase(start, text.find('\n', at) - start + 1);
    return text;
  }

  std::filesystem::path dir_;
};

TEST_F(LoaderTest, ExtendsMergesAndOverridesWin) {
  std::string f = write("big.yaml",
                        "extends: maia100-class\n"
                        "description: more HBM\n"
                        "hbm:\n"
                        "  stacks: 6\n"
                        "  capacity: 96GB\n");
  Arch a = load_arch(f, {"chip.clock=2GHz"});
  EXPECT_EQ(a.name, "big");  // a derived design does not inherit the base's name
  EXPECT_EQ(a.hbm.stacks, 6);
  EXPECT_EQ(a.hbm.capacity, 96e9);
  EXPECT_EQ(a.chip.clock, 2e9);
  EXPECT_EQ(a.hbm.data_rate, 3.5e9);       // inherited
  EXPECT_EQ(a.chip.tile.systolic.rows, 64);  // inherited
}

TEST_F(LoaderTest, JsonFilesLoad) {
  std::string f = write("d.json", R"({"extends": "h100-sxm", "chip": {"clock": "1.5GHz"}})");
  EXPECT_EQ(load_arch(f).chip.clock, 1.5e9);
}

TEST_F(LoaderTest, OverrideWithAMapValue) {
  Arch a = load_arch("maia100-class", {"chip.mesh={cols: 4, rows: 4}"});
  EXPECT_EQ(a.tiles(), 16);
}

TEST_F(LoaderTest, UnknownKeyNamesPathLineAndSuggestion) {
  std::string f = write("u.yaml",
                        "extends: maia100-class\n"
                        "chip:\n"
                        "  tile:\n"
                        "    sram:\n"
                        "      capacty: 5MB\n");
  std::string e = error_of(f);
  EXPECT_THAT(e, HasSubstr("u.yaml:5:"));
  EXPECT_THAT(e, HasSubstr("chip.tile.sram.capacty: unknown key (did you mean 'capacity'?)"));
}

TEST_F(LoaderTest, MissingRequiredKeyNamesPath) {
  std::string f = write("m.yaml", maia_without("data_rate:"));
  std::string e = error_of(f);
  EXPECT_THAT(e, HasSubstr("m.yaml"));
  EXPECT_THAT(e, HasSubstr("hbm.data_rate: missing required key"));
}

TEST_F(LoaderTest, MissingGroupIsReportedOnceWithItsKeys) {
  std::string text(preset_text("maia100-class"));
  text = text.substr(0, text.find("\nhbm:")) + "\n" + text.substr(text.find("\npower:"));
  std::string e = error_of(write("g.yaml", text));
  EXPECT_THAT(e, HasSubstr("hbm: missing required key (with stacks, channels_per_stack"));
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 0) << e;  // one problem, not fifteen
}

TEST_F(LoaderTest, WrongUnitNamesPathAndLine) {
  std::string f = write("w.yaml", "extends: maia100-class\nchip:\n  clock: 1.5GB\n");
  std::string e = error_of(f);
  EXPECT_THAT(e, HasSubstr("w.yaml:3:"));
  EXPECT_THAT(e, HasSubstr("chip.clock: unknown unit 'GB'"));
}

TEST_F(LoaderTest, MissingUnitNamesPath) {
  std::string e = error_of(write("n.yaml", "extends: maia100-class\nhbm:\n  capacity: 64\n"));
  EXPECT_THAT(e, HasSubstr("n.yaml:3:"));
  EXPECT_THAT(e, HasSubstr("hbm.capacity: missing unit"));
}

TEST_F(LoaderTest, NegativeAndZeroSizesAreRejected) {
  std::string e = error_of(write("neg.yaml",
                                 "extends: maia100-class\nchip:\n  tile:\n    sram:\n"
                                 "      capacity: -5MB\n  mesh:\n    cols: 0\n"));
  EXPECT_THAT(e, HasSubstr("neg.yaml:5:"));
  EXPECT_THAT(e, HasSubstr("chip.tile.sram.capacity: must be greater than zero, got '-5MB'"));
  EXPECT_THAT(e, HasSubstr("neg.yaml:7:"));
  EXPECT_THAT(e, HasSubstr("chip.mesh.cols: must be greater than zero"));
}

TEST_F(LoaderTest, SramTooSmallForAnArrayTile) {
  std::string e = error_of(write("s.yaml",
                                 "extends: maia100-class\nchip:\n  tile:\n    sram:\n"
                                 "      capacity: 16KiB\n"));
  EXPECT_THAT(e, HasSubstr("s.yaml:5:"));
  EXPECT_THAT(e, HasSubstr("chip.tile.sram.capacity: SRAM of 16KiB cannot hold one double-buffered 64x64"));
}

TEST_F(LoaderTest, HbmChannelsMustDivideCapacity) {
  std::string e = error_of(write("h.yaml", "extends: maia100-class\nhbm:\n  capacity: 64000000001B\n"));
  EXPECT_THAT(e, HasSubstr("h.yaml:3:"));
  EXPECT_THAT(e, HasSubstr("hbm.capacity: capacity"));
  EXPECT_THAT(e, HasSubstr("is not divisible by the 64 pseudo-channels"));
}

TEST_F(LoaderTest, ClusterSizeMustDivideTiles) {
  std::string e = error_of("maia100-class", {"chip.cluster_size=3"});
  EXPECT_THAT(e, HasSubstr("<command line>: -s chip.cluster_size=3"));
  EXPECT_THAT(e, HasSubstr("chip.cluster_size: cluster size 3 does not divide the 64 tiles"));
}

TEST_F(LoaderTest, HbmCacheIsAShareOfAChipWideMemory) {
  EXPECT_THAT(error_of("h100-sxm", {"chip.shared_memory.hbm_cache=1.5"}),
              HasSubstr("chip.shared_memory.hbm_cache: a share of the capacity, at most 1"));
  // maia100-class's shared memory is one per cluster: not a cache of HBM.
  EXPECT_THAT(error_of("maia100-class", {"chip.shared_memory.hbm_cache=0.5"}),
              HasSubstr("chip.shared_memory.hbm_cache: only a chip-wide shared memory caches HBM"));
  EXPECT_THAT(error_of("h100-sxm", {"chip.launch.gap=-1us"}), HasSubstr("chip.launch.gap"));
  EXPECT_THAT(error_of("h100-sxm", {"chip.launch.host=1e300s"}),
              HasSubstr("chip.launch.host: a host time per kernel of at most 1 ms"));
}

TEST_F(LoaderTest, ActivePowerAndLimitWindowAreBounded) {
  EXPECT_THAT(error_of("h100-sxm", {"power.active_power=-1W"}), HasSubstr("power.active_power"));
  // 70.4 W static + 630 W active reach the 700 W TDP: the chip could not run at its clock at all.
  EXPECT_THAT(error_of("h100-sxm", {"power.active_power=630W"}),
              HasSubstr("power.active_power: active power (630W) with the static power must be below the TDP and the power limit (700W)"));
  // A limit above the TDP does not lift it: the TDP bounds it too.
  EXPECT_THAT(error_of("h100-sxm", {"power.limit=2000W", "power.active_power=650W"}),
              HasSubstr("must be below the TDP and the power limit (700W)"));
  EXPECT_THAT(error_of("h100-sxm", {"power.limit=120W"}), HasSubstr("power.active_power"));  // 70.4 + 50 W
  EXPECT_THAT(error_of("h100-sxm", {"power.limit_window=-1ms"}), HasSubstr("power.limit_window"));
  EXPECT_THAT(error_of("h100-sxm", {"power.limit_window=1e300s"}),
              HasSubstr("power.limit_window: a power limit's window of at most 10 s"));
  EXPECT_NO_THROW(load_arch("h100-sxm", {"power.active_power=0W"}));
}

TEST_F(LoaderTest, ScaleOutDomainsMustDivideTheChipsAndHaveLinks) {
  EXPECT_THAT(error_of("maia100-class", {"system.chips=12", "system.scale_out.domain=8"}),
              HasSubstr("system.scale_out.domain: domains of 8 chips do not divide the system's 12"));
  EXPECT_THAT(error_of("maia100-class", {"system.chips=16", "system.scale_out.domain=8"}),
              HasSubstr("system.scale_out.count: 16 chips in domains of 8 need at least one scale-out link per chip"));
  EXPECT_THAT(error_of("maia100-class", {"system.chips=16", "system.scale_out.domain=8", "system.scale_out.count=1"}),
              HasSubstr("system.scale_out.bandwidth: 16 chips in domains of 8 need a scale-out bandwidth"));
  EXPECT_NO_THROW(load_arch("maia100-class", {"system.chips=16", "system.scale_out.domain=8", "system.scale_out.count=1",
                                              "system.scale_out.bandwidth=50GB/s", "system.scale_out.latency=5us"}));
}

// Each chip shares its links among the chips (or switch) it links to directly.
TEST_F(LoaderTest, TooFewLinksForTheTopology) {
  EXPECT_THAT(error_of("mi300x-x8", {"system.chips=16", "system.scale_out.domain=0"}),
              HasSubstr("system.link.count: a fully connected system of 16 chips needs at least 15 links per chip, not 7"));
  EXPECT_THAT(error_of("maia100-class", {"system.chips=7", "system.topology=torus2d", "system.link.count=1"}),
              HasSubstr("system.link.count: a 2D torus of 7 chips needs at least 2 links per chip, not 1"));  // 7 x 1
  EXPECT_THAT(error_of("maia100-class", {"system.chips=8", "system.topology=torus3d", "system.link.count=5"}),
              HasSubstr("a 3D torus of 8 chips needs at least 6 links per chip, not 5"));
  EXPECT_THAT(error_of("maia100-x8", {"system.link.count=2"}),
              HasSubstr("a fully connected system of 4 chips (a scale-up domain) needs at least 3 links per chip, not 2"));
  EXPECT_THAT(error_of("hgx-h100x8", {"system.link.count=0"}),
              HasSubstr("a switched system of 8 chips needs at least 1 link per chip, not 0"));
  EXPECT_NO_THROW(load_arch("maia100-class", {"system.chips=7", "system.topology=torus2d", "system.link.count=2"}));
}

TEST_F(LoaderTest, MacsMustBeMultipleOfArraySizeAndPriced) {
  EXPECT_THAT(error_of("maia100-class", {"chip.tile.systolic.macs_per_cycle.bf16=1000"}),
              HasSubstr("chip.tile.systolic.macs_per_cycle.bf16: MACs per cycle (1000) must be a multiple"));
  EXPECT_THAT(error_of("maia100-class", {"power.mac_energy={bf16: 1pJ}"}),
              HasSubstr("power.mac_energy.int8: the array supports int8 but its MAC energy is not given"));
}

TEST_F(LoaderTest, StaticPowerAboveTdp) {
  std::string e = error_of("maia100-class", {"power.static_power=800W"});
  EXPECT_THAT(e, HasSubstr("power.static_power: static power (800W) must be below the TDP (700W)"));
}

TEST_F(LoaderTest, GpuNeedsPurchasePrice) {
  std::string f = write("gpu.yaml", "extends: maia100-class\nkind: gpu\n");
  EXPECT_THAT(error_of(f), HasSubstr("cost.purchase_price: a GPU is bought as a product"));
}

TEST_F(LoaderTest, BadChoiceListsOptions) {
  std::string e = error_of("maia100-class", {"chip.tile.systolic.dataflow=diagonal"});
  EXPECT_THAT(e, HasSubstr("chip.tile.systolic.dataflow: 'diagonal' is not one of: ws, os"));
}

TEST_F(LoaderTest, UnknownDtypeInTable) {
  std::string e = error_of("maia100-class", {"power.mac_energy.bf17=1pJ"});
  EXPECT_THAT(e, HasSubstr("power.mac_energy.bf17: unknown dtype"));
  EXPECT_THAT(e, HasSubstr("did you mean 'bf16'?"));
}

TEST_F(LoaderTest, WrongShapeOfValue) {
  std::string e = error_of(write("shape.yaml", "extends: maia100-class\nchip: 5\nhbm:\n  stacks: [1, 2]\n"));
  EXPECT_THAT(e, HasSubstr("shape.yaml:2:"));
  EXPECT_THAT(e, HasSubstr("chip: expected a map of keys, got a value"));
  EXPECT_THAT(e, HasSubstr("hbm.stacks: expected a whole number, got a list"));
}

TEST_F(LoaderTest, FractionalCountIsRejected) {
  std::string e = error_of("maia100-class", {"hbm.stacks=4.5"});
  EXPECT_THAT(e, HasSubstr("hbm.stacks: expected a whole number"));
}

TEST_F(LoaderTest, SyntaxErrorNamesFileAndLine) {
  std::string e = error_of(write("syn.yaml", "name: x\nchip:\n  clock: [1GHz\n"));
  EXPECT_THAT(e, HasSubstr("syn.yaml:"));
  EXPECT_THAT(e, HasSubstr("syntax error"));
}

TEST_F(LoaderTest, DuplicateKey) {
  std::string e = error_of(write("dup.yaml", "extends: maia100-class\nchip:\n  clock: 1GHz\n  clock: 2GHz\n"));
  EXPECT_THAT(e, HasSubstr("dup.yaml:4:"));
  EXPECT_THAT(e, HasSubstr("clock: duplicate key"));
}

TEST_F(LoaderTest, UnknownPresetListsKnownOnes) {
  std::string e = error_of(write("x.yaml", "extends: maia101-class\n"));
  EXPECT_THAT(e, HasSubstr("no such preset or file"));
  EXPECT_THAT(e, HasSubstr("did you mean 'maia100-class'?"));
  EXPECT_THAT(e, HasSubstr("x.yaml:1:"));
}

TEST_F(LoaderTest, ExtendsCycleIsAnError) {
  write("a.yaml", "extends: b.yaml\n");
  std::string f = write("b.yaml", "extends: a.yaml\n");
  EXPECT_THAT(error_of(f), HasSubstr("extends chain loops back"));
}

TEST_F(LoaderTest, MissingFile) {
  EXPECT_THAT(error_of((dir_ / "nope.yaml").string()), HasSubstr("nope.yaml: cannot open file"));
}

TEST_F(LoaderTest, OverrideErrors) {
  EXPECT_THAT(error_of("maia100-class", {"chip.clok=1GHz"}),
              HasSubstr("<command line>: -s chip.clok=1GHz: chip.clok: unknown key (did you mean 'clock'?)"));
  EXPECT_THAT(error_of("maia100-class", {"chip.clock=fast"}),
              HasSubstr("chip.clock: expected a quantity with a unit such as '1.5GHz'"));
  EXPECT_THAT(error_of("maia100-class", {"chip.clock"}), HasSubstr("must look like key.path=value"));
}

TEST_F(LoaderTest, AllProblemsAreReportedTogether) {
  try {
    load_arch("maia100-class", {"chip.clock=1GB", "hbm.stacks=0", "chip.foo=1"});
    FAIL();
  } catch (const ArchError& e) {
    EXPECT_EQ(e.problems().size(), 3u) << e.what();
  }
}

TEST_F(LoaderTest, SchemaListsEveryLoadedKey) {
  // Every parameter `arch show` prints is documented by `arch schema`.
  std::set<std::string> documented;
  for (const SchemaRow& r : schema_rows()) documented.insert(r.path);
  for (const ValueRow& r : value_rows(load_arch("maia100-class"))) {
    std::string path = r.path;
    if (path.find("macs_per_cycle.") != std::string::npos || path.find("mac_energy.") != std::string::npos) {
      path = path.substr(0, path.rfind('.'));  // table entries are documented as the table
    }
    EXPECT_TRUE(documented.count(path)) << path;
  }
}

}  // namespace
}  // namespace tessera::arch
