// A Perfetto / Chrome trace (JSON, loads in ui.perfetto.dev): a track per unit per tile with a
// slice per instruction, and utilisation counters per HBM pseudo-channel and per NoC link,
// aggregated over fixed windows so that a whole-model run stays a manageable file. Slices past
// a cap are counted, not stored. Slices of one track that overlap (a DMA engine's concurrent
// transfers) are spread over extra lanes of it, so every lane nests properly.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "sim/time.hpp"

namespace tessera::sim {

class Trace {
 public:
  explicit Trace(Tick window = 1'000'000, size_t max_slices = 2'000'000);

  // A track for slices (a unit) or for a utilisation counter (a channel, a link).
  int track(std::string name, int chip);
  void slice(int track, std::string_view name, Tick start, Tick end);
  // A slice with its own name and arguments (a JSON object text), e.g. an operator and its
  // figures. Never dropped.
  void labelled(int track, std::string name, Tick start, Tick end, std::string args);
  void busy(int track, Tick start, Tick end);

  void write(std::ostream& out) const;
  size_t slices() const { return slices_.size(); }
  size_t dropped() const { return dropped_; }

 private:
  struct Track {
    std::string name;
    int chip;
    std::vector<double> bins;  // busy picoseconds per window
  };
  struct Slice {
    int track;
    std::string_view name;  // instruction mnemonics: static storage
    Tick start, end;
  };
  Tick window_;
  size_t max_slices_;
  size_t dropped_ = 0;
  struct Labelled {
    int track;
    std::string name;
    Tick start, end;
    std::string args;
  };
  std::vector<Track> tracks_;
  std::vector<Slice> slices_;
  std::vector<Labelled> labelled_;
};

}  // namespace tessera::sim
