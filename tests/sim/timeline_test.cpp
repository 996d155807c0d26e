// The reservation calendar against a brute-force reference that marks every tick busy or free:
// a reservation starts at the first tick at or after its ready time where it fits.
#include "sim/timeline.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace tessera::sim {
namespace {

TEST(Timeline, FillsGapsAndMergesNeighbours) {
  Timeline t;
  EXPECT_EQ(t.reserve(10, 5), 10);  // [10, 15)
  EXPECT_EQ(t.reserve(30, 5), 30);  // [30, 35)
  EXPECT_EQ(t.reserve(12, 4), 15);  // after [10, 15), touching it: [10, 19)
  EXPECT_EQ(t.intervals(), 2u);
  EXPECT_EQ(t.find(19, 12).start, 35);  // the gap [19, 30) is too short
  const Timeline::Slot gap = t.find(19, 11);
  EXPECT_EQ(gap.start, 19);
  t.reserve(gap, 11);  // closes the gap: one interval [10, 35)
  EXPECT_EQ(t.intervals(), 1u);
  EXPECT_EQ(t.reserve(0, 10), 0);  // before everything, touching: [0, 35)
  EXPECT_EQ(t.intervals(), 1u);
  EXPECT_EQ(t.busy(), 35);
  t.forget_before(35);
  EXPECT_EQ(t.intervals(), 0u);
  EXPECT_EQ(t.busy(), 35);  // the total is a statistic, not the calendar
}

TEST(Timeline, MatchesTickByTickReference) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    Timeline t;
    std::vector<bool> busy(4000, false);
    Tick total = 0;
    for (int i = 0; i < 120; ++i) {
      const Tick ready = Tick(rng() % 3000), duration = Tick(1 + rng() % 40);
      Tick expected = ready;
      for (Tick s = ready;; ++s) {
        bool free = true;
        for (Tick k = s; k < s + duration && free; ++k) free = !busy[size_t(k)];
        if (free) {
          expected = s;
          break;
        }
      }
      const Timeline::Slot slot = t.find(ready, duration);
      ASSERT_EQ(slot.start, expected) << "trial " << trial << " request " << i;
      const Tick start = (i % 2 == 0) ? t.reserve(ready, duration) : (t.reserve(slot, duration), slot.start);
      ASSERT_EQ(start, expected);
      for (Tick k = start; k < start + duration; ++k) busy[size_t(k)] = true;
      total += duration;
    }
    EXPECT_EQ(t.busy(), total);
  }
}

}  // namespace
}  // namespace tessera::sim
