// The HBM model against DRAM timing formulas derived by hand (tRCD + tCL + burst, ...), in the
// style of DRAMsim3's and Ramulator's tests: expected values come from the timing parameters,
// never from the model's own output.
#include "sim/hbm.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <list>
#include <map>
#include <random>
#include <set>

#include "arch/loader.hpp"

namespace tessera::sim {
namespace {

arch::Arch maia(std::vector<std::string> overrides = {}) { return arch::load_arch("maia100-class", overrides); }

// maia100-class HBM2E: 3.5 Gbps per pin, 64-bit pseudo-channels, burst length 4:
// a burst is 32 bytes and lasts 4 / 3.5e9 s = 1142.857 ps.
constexpr double kBurstPs = 4.0 / 3.5e9 * 1e12;
constexpr Tick kRCD = 14000, kCL = 14000, kRP = 14000, kRAS = 33000;

// The first address after `local` in the same bank but another row.
uint64_t same_bank_other_row(const HbmGeometry& g, uint64_t local) {
  uint64_t a = local + g.row_size;
  while (g.bank_of(a) != g.bank_of(local) || g.row_of(a) == g.row_of(local)) a += g.row_size;
  return a;
}

TEST(Hbm, GeometryFromTheArchitecture) {
  Hbm h(maia());
  const HbmGeometry& g = h.geometry();
  EXPECT_EQ(g.pcs, 4 * 8 * 2);
  EXPECT_EQ(g.burst_bytes, 32u);
  EXPECT_NEAR(g.burst_ps, kBurstPs, 1e-6);
  // 64 pseudo-channels x 32 B per 1142.857 ps = 1.792 TB/s: the preset's published peak.
  EXPECT_NEAR(h.peak_bandwidth(), 1.792e12, 1e3);
}

TEST(Hbm, IdleReadLatencyIsRcdPlusClPlusBurst) {
  Hbm h(maia());
  const Tick done = h.channel(0).access(0, 0, 32, false);
  EXPECT_EQ(done, kRCD + kCL + Tick(kBurstPs + 0.5));
}

TEST(Hbm, RowHitAndRowConflictLatencies) {
  Hbm h(maia());
  HbmChannel& c = h.channel(0);
  const Tick first = c.access(0, 0, 32, false);
  // Same row, later: only tCL + burst.
  const Tick t1 = first + 100000;
  EXPECT_EQ(c.access(t1, 64, 32, false) - t1, kCL + Tick(kBurstPs + 0.5));
  // Another row of the same bank: precharge first.
  const Tick t2 = t1 + 100000;
  EXPECT_EQ(c.access(t2, same_bank_other_row(h.geometry(), 0), 32, false) - t2, kRP + kRCD + kCL + Tick(kBurstPs + 0.5));
  EXPECT_EQ(c.stats().row_misses, 1u);
  EXPECT_EQ(c.stats().row_hits, 1u);
  EXPECT_EQ(c.stats().row_conflicts, 1u);
}

TEST(Hbm, BanksWithinARowAreAPermutationStartingAtAHashedBank) {
  const HbmGeometry g = HbmGeometry::from(maia());
  std::set<uint64_t> starts;
  for (int64_t row = 0; row < 64; ++row) {
    const uint64_t base = uint64_t(row) * g.row_size * uint64_t(g.banks);
    std::set<uint64_t> banks;
    for (int64_t j = 0; j < g.banks; ++j) {
      const uint64_t a = base + uint64_t(j) * g.row_size;
      EXPECT_EQ(g.row_of(a), row);
      EXPECT_EQ(g.bank_of(a), (g.bank_of(base) + uint64_t(j)) % uint64_t(g.banks)) << "successive banks";
      banks.insert(g.bank_of(a));
    }
    EXPECT_EQ(banks.size(), size_t(g.banks));
    starts.insert(g.bank_of(base));
  }
  EXPECT_GE(starts.size(), size_t(g.banks) / 2) << "rows start in many different banks";
}

TEST(Hbm, ARowHitOvertakesAnotherBanksConflict) {
  Hbm h(maia());
  HbmChannel& c = h.channel(0);
  const HbmGeometry& g = h.geometry();
  c.access(0, 0, 32, false);           // opens a row in one bank
  c.access(0, g.row_size, 32, false);  // and one in the next bank
  const Tick t = 100000;
  // The first bank must precharge and activate another row before its data...
  EXPECT_EQ(c.access(t, same_bank_other_row(g, 0), 32, false) - t, kRP + kRCD + kCL + Tick(kBurstPs + 0.5));
  // ...while a hit in the other bank arriving at the same time uses the idle bus meanwhile.
  EXPECT_EQ(c.access(t, g.row_size + 32, 32, false) - t, kCL + Tick(kBurstPs + 0.5));
}


TEST(Hbm, TrasHoldsOffAnEarlyPrecharge) {
  Hbm h(maia());
  HbmChannel& c = h.channel(0);
  c.access(0, 0, 32, false);  // activates bank 0 at t = 0
  // A conflicting access right away must wait for tRAS after that activate before precharging.
  const Tick done = c.access(1000, same_bank_other_row(h.geometry(), 0), 32, false);
  EXPECT_EQ(done, kRAS + kRP + kRCD + kCL + Tick(kBurstPs + 0.5));
}

TEST(Hbm, SequentialStreamReachesNinetyPercentOfPeak) {
  Hbm h(maia());
  const uint64_t chunk = 64 << 10, total = uint64_t(256) << 20;
  Tick done = 0;
  for (uint64_t a = 0; a < total; a += chunk) done = std::max(done, h.access(0, a, chunk, false));
  const double achieved = double(total) / ticks_to_seconds(done);
  EXPECT_GE(achieved / h.peak_bandwidth(), 0.90) << achieved / 1e12 << " TB/s";
  // The loss is refresh: about tRFC / tREFI = 260 / 3900 = 6.7%.
  EXPECT_LE(achieved / h.peak_bandwidth(), 1.0 - 0.9 * 260.0 / 3900.0);
}

TEST(Hbm, RefreshCostsAboutTrfcOverTrefi) {
  const uint64_t total = uint64_t(64) << 20;
  auto stream_time = [&](std::vector<std::string> o) {
    Hbm h(maia(o));
    Tick done = 0;
    for (uint64_t a = 0; a < total; a += 65536) done = std::max(done, h.access(0, a, 65536, false));
    return double(done);
  };
  const double with = stream_time({});
  const double without = stream_time({"hbm.timing.tREFI=1s"});
  const double loss = 1.0 - without / with;
  // At least the refresh itself; at most that plus re-opening the rows it closed
  // (tRCD + tCL) and one row's data that could not finish before it (32 bursts).
  EXPECT_GE(loss, 260.0 / 3900.0);
  EXPECT_LE(loss, (260.0 + 14 + 14 + 32 * kBurstPs / 1000) / 3900.0);
}

TEST(Hbm, RandomSmallReadsPayForRowMisses) {
  // One 32-byte read at a time to random addresses: each access costs exactly its kind's
  // latency, so the total follows from the counts of hits, misses and conflicts.
  Hbm h(maia({"hbm.timing.tREFI=1s"}));
  HbmChannel& c = h.channel(0);
  std::mt19937_64 rng(7);
  const uint64_t span = h.geometry().pc_capacity / 32;
  Tick t = 0;
  for (int i = 0; i < 2000; ++i) t = c.access(t + 60000, (rng() % span) * 32, 32, false);  // 60 ns apart: tRAS long past
  const auto& s = c.stats();
  const Tick burst = Tick(kBurstPs + 0.5);
  const Tick expected = 2000 * 60000 + Tick(s.row_hits) * (kCL + burst) + Tick(s.row_misses) * (kRCD + kCL + burst) +
                        Tick(s.row_conflicts) * (kRP + kRCD + kCL + burst);
  EXPECT_EQ(t, expected);
  EXPECT_GT(s.row_conflicts, 1800u);  // random rows almost never hit
  // Back to back instead of spaced, random small reads get far less than peak.
  Hbm h2(maia({"hbm.timing.tREFI=1s"}));
  Tick done = 0;
  for (int i = 0; i < 4000; ++i) done = std::max(done, h2.channel(0).access(0, (rng() % span) * 32, 32, false));
  const double bw = 4000.0 * 32 / ticks_to_seconds(done);
  EXPECT_LT(bw, 0.5 * h2.peak_bandwidth() / double(h2.geometry().pcs));
}

TEST(Hbm, WriteToReadTurnaround) {
  Hbm h(maia({"hbm.timing.tREFI=1s"}));
  HbmChannel& c = h.channel(0);
  const Tick w = c.access(0, 0, 32, true);
  // A read of the same open row arriving at once waits for tWTR after the write's data.
  const Tick r = c.access(0, 32, 32, false);
  EXPECT_EQ(r, w + 7500 + Tick(kBurstPs + 0.5));
}

TEST(Hbm, PowerOfTwoStridesSpreadOverChannels) {
  // A column strip of a row-major matrix: 512-byte rows 8 KiB apart. Without hashing the
  // channel index such a pattern would touch 4 of the 64 pseudo-channels.
  Hbm h(maia());
  std::set<int64_t> used;
  for (uint64_t row = 0; row < 4096; ++row) {
    h.split(row * 8192, 512, [&](int64_t pc, uint64_t, uint64_t) { used.insert(pc); });
  }
  EXPECT_EQ(used.size(), 64u);
}

TEST(Divisor, MatchesTheHardwareDivide) {
  // Powers of two, the non-powers the models use (160 pseudo-channels, a 1 us power window),
  // extremes and random divisors, against random and boundary dividends.
  std::mt19937_64 rng(11);
  std::vector<uint64_t> divisors{1, 2, 3, 7, 64, 160, 1000000, (1ull << 32) + 1, (1ull << 63) + 1, ~0ull};
  for (int i = 0; i < 200; ++i) divisors.push_back(std::max<uint64_t>(1, rng() >> (rng() % 64)));
  for (const uint64_t d : divisors) {
    const Divisor by(d);
    std::vector<uint64_t> xs{0, 1, d - 1, d, d + 1, ~0ull / d * d, ~0ull / d * d - 1, ~0ull};
    for (int i = 0; i < 500; ++i) xs.push_back(rng() >> (rng() % 64));
    for (const uint64_t x : xs) {
      ASSERT_EQ(by.div(x), x / d) << x << " / " << d;
      ASSERT_EQ(by.mod(x), x % d) << x << " % " << d;
    }
  }
}

TEST(Hbm, SplitMatchesTheByteByByteMap) {
  Hbm h(maia());
  const HbmGeometry& g = h.geometry();
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    const uint64_t addr = rng() % (1 << 24), bytes = 1 + rng() % (trial % 2 ? 300000 : 3000);
    std::map<int64_t, std::pair<uint64_t, uint64_t>> expect;  // pc -> (first local, count)
    for (uint64_t a = addr; a < addr + bytes; ++a) {
      // The map as documented: granule i in row r = i / P goes to (i % P + rotation(r)) % P.
      const uint64_t i = a / g.interleave, r = i / uint64_t(g.pcs);
      const int64_t pc = int64_t((i % uint64_t(g.pcs) + hbm_row_rotation(r)) % uint64_t(g.pcs));
      const uint64_t local = r * g.interleave + a % g.interleave;
      auto [it, fresh] = expect.try_emplace(pc, local, 0);
      EXPECT_EQ(it->second.first + it->second.second, local) << "channel's part is contiguous";
      it->second.second++;
    }
    std::map<int64_t, std::pair<uint64_t, uint64_t>> got;
    h.split(addr, bytes, [&](int64_t pc, uint64_t local, uint64_t n) {
      EXPECT_FALSE(got.count(pc));
      got[pc] = {local, n};
    });
    ASSERT_EQ(got, expect) << "addr " << addr << " bytes " << bytes;
  }
}

TEST(HbmCache, HoldsWholeSectorsOfRecentGranules) {
  HbmCache c(2 * HbmCache::kGranule);  // two granules
  const uint64_t G = HbmCache::kGranule;
  EXPECT_FALSE(c.touch(0, G));
  EXPECT_TRUE(c.touch(0, G));
  EXPECT_TRUE(c.touch(64, 256));   // whole sectors, held
  EXPECT_FALSE(c.touch(64, 100));  // ends inside a sector: a miss (its bytes come from HBM)
  EXPECT_FALSE(c.touch(G, 32));    // granule 1, one sector
  EXPECT_FALSE(c.touch(G, 64));    // its second sector was not held
  EXPECT_TRUE(c.touch(G + 32, 32));
  // Least recently used out: granules 0, 1, then 0 again, then 2 evicts 1.
  EXPECT_TRUE(c.touch(0, 32));
  EXPECT_FALSE(c.touch(2 * G, 32));
  EXPECT_TRUE(c.touch(0, 32));
  EXPECT_FALSE(c.touch(G, 32));
  // walk() splits at granule boundaries.
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  c.walk(G - 64, 128, [&](uint64_t a, uint64_t n, bool) { runs.push_back({a, n}); });
  EXPECT_EQ(runs, (std::vector<std::pair<uint64_t, uint64_t>>{{G - 64, 64}, {G, 64}}));
}

TEST(HbmCache, MatchesAListAndMapReference) {
  // 8 granules over accesses to 40 of them, and 100 over 400 (the slots and the table grow as
  // granules come in), random ranges within a granule: the answers of an obviously-correct LRU
  // (a list in recency order, a set of held sectors per granule) and the cache's slots, recency
  // links and open-addressing table agree.
  constexpr uint64_t G = HbmCache::kGranule, S = HbmCache::kSector;
  for (const auto& [capacity, granules] : {std::pair<size_t, uint64_t>{8, 40}, {100, 400}}) {
    HbmCache c(capacity * G);
    std::list<uint64_t> order;  // most recent first
    std::map<uint64_t, std::set<uint64_t>> held;
    std::mt19937_64 rng(7);
    int hits = 0;
    for (int step = 0; step < 20000; ++step) {
      // Mostly whole sectors (as DMAs of tensor rows), one access in four anywhere.
      const bool aligned = rng() % 4 != 0;
      const uint64_t g = rng() % granules, off = aligned ? rng() % (G / S) * S : rng() % G;
      const uint64_t n = aligned ? S * (1 + rng() % ((G - off) / S)) : 1 + rng() % (G - off);
      auto it = std::find(order.begin(), order.end(), g);
      if (it != order.end()) {
        order.erase(it);
      } else if (order.size() == capacity) {
        held.erase(order.back());
        order.pop_back();
      }
      order.push_front(g);
      const uint64_t s0 = (off + S - 1) / S, s1 = (off + n) / S;
      bool want = off % S == 0 && (off + n) % S == 0 && s1 > s0;
      for (uint64_t x = s0; x < s1; ++x) want = want && held[g].count(x), held[g].insert(x);
      ASSERT_EQ(c.touch(g * G + off, n), want) << capacity << " granules, step " << step;
      hits += want;
    }
    EXPECT_GT(hits, 100) << capacity;  // the sequence exercises hits, not only misses
  }
}

}  // namespace
}  // namespace tessera::sim
