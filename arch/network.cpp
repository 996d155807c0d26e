#include "arch/network.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace tessera::arch {
namespace {

// The most even factorisation of n into `k` factors, largest first.
std::vector<int> even_factors(int n, int k) {
  if (k == 1) return {n};
  int best = 1;
  for (int f = 1; f * f <= n; ++f) {
    if (n % f == 0 && std::pow(double(f), double(k)) <= double(n) + 0.5) best = f;
  }
  std::vector<int> rest = even_factors(n / best, k - 1);
  rest.push_back(best);
  std::sort(rest.rbegin(), rest.rend());
  return rest;
}

}  // namespace

std::vector<int> torus_dims(Topology t, int64_t chips) {
  switch (t) {
    case Topology::Ring: return {int(chips)};
    case Topology::Torus2D: return even_factors(int(chips), 2);
    case Topology::Torus3D: return even_factors(int(chips), 3);
    default: return {};
  }
}

int64_t link_neighbours(Topology t, int64_t chips) {
  if (chips < 2) return 0;
  switch (t) {
    case Topology::FullyConnected: return chips - 1;
    case Topology::Switch: return 1;
    default: {
      const std::vector<int> dims = torus_dims(t, chips);
      return 2 * std::count_if(dims.begin(), dims.end(), [](int d) { return d > 1; });
    }
  }
}

std::string too_few_links(const SystemParams& s) {
  const int64_t chips = s.domain(), need = link_neighbours(s.topology, chips);
  if (s.link.count >= need) return "";
  const char* what = s.topology == Topology::FullyConnected ? "a fully connected system"
                     : s.topology == Topology::Switch       ? "a switched system"
                     : s.topology == Topology::Ring         ? "a ring"
                     : s.topology == Topology::Torus2D      ? "a 2D torus"
                                                            : "a 3D torus";
  return fmt::format("{} of {} chips{} needs at least {} link{} per chip, not {}", what, chips,
                     chips < s.chips ? " (a scale-up domain)" : "", need, need == 1 ? "" : "s", s.link.count);
}

}  // namespace tessera::arch
