// The shape of a system's chip-to-chip network, as the description implies it: the dimensions
// of a ring or torus and how many neighbours share each chip's `system.link.count` links. The
// simulator builds its topologies from these; validation checks the links suffice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "arch/arch.hpp"

namespace tessera::arch {

// A ring (one dimension) or torus of `chips`: the most even factorisation into 1, 2 or 3
// dimensions, largest first. Empty for the other topologies.
std::vector<int> torus_dims(Topology t, int64_t chips);

// The chips (or switch) each chip of a scale-up domain of `chips` links to directly, sharing its
// links among them: every other chip (fully connected), two per dimension longer than one (ring,
// torus), the switch.
int64_t link_neighbours(Topology t, int64_t chips);

// Why a scale-up domain of the system has too few links per chip ("a fully connected system of
// 16 chips needs at least 15 links per chip, not 7"), or empty when it has enough.
std::string too_few_links(const SystemParams& s);

}  // namespace tessera::arch
