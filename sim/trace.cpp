#include "sim/trace.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace tessera::sim {

Trace::Trace(Tick window, size_t max_slices) : window_(window), max_slices_(max_slices) {}

int Trace::track(std::string name, int chip) {
  tracks_.push_back({std::move(name), chip, {}});
  return int(tracks_.size()) - 1;
}

void Trace::slice(int track, std::string_view name, Tick start, Tick end) {
  if (slices_.size() >= max_slices_) {
    ++dropped_;
    return;
  }
  slices_.push_back({track, name, start, end});
}

void Trace::busy(int track, Tick start, Tick end) {
  std::vector<double>& bins = tracks_[size_t(track)].bins;
  for (Tick w = start / window_; w * window_ < end; ++w) {
    const Tick lo = std::max(start, w * window_), hi = std::min(end, (w + 1) * window_);
    if (bins.size() <= size_t(w)) bins.resize(size_t(w) + 1, 0.0);
    bins[size_t(w)] += double(hi - lo);
  }
}

void Trace::write(std::ostream& out) const {
  // Written by hand, one event a line, so that large traces do not build a JSON tree.
  auto us = [](Tick t) { return double(t) / 1e6; };
  out << "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"dropped_slices\":" << dropped_ << "},\"traceEvents\":[\n";
  bool first = true;
  auto sep = [&]() -> std::ostream& {
    if (!first) out << ",\n";
    first = false;
    return out;
  };
  std::vector<int> chips;
  for (const Track& t : tracks_) {
    if (std::find(chips.begin(), chips.end(), t.chip) == chips.end()) chips.push_back(t.chip);
  }
  for (int c : chips) {
    sep() << fmt::format(R"({{"ph":"M","name":"process_name","pid":{},"args":{{"name":"chip{}"}}}})", c, c);
  }
  for (size_t i = 0; i < tracks_.size(); ++i) {
    const Track& t = tracks_[i];
    sep() << fmt::format(R"({{"ph":"M","name":"thread_name","pid":{},"tid":{},"args":{{"name":{}}}}})", t.chip, i,
                         nlohmann::json(t.name).dump());
  }
  for (const Slice& s : slices_) {
    const Track& t = tracks_[size_t(s.track)];
    sep() << fmt::format(R"({{"ph":"X","pid":{},"tid":{},"ts":{:.6f},"dur":{:.6f},"name":"{}"}})", t.chip, s.track,
                         us(s.start), us(s.end - s.start), s.name);
  }
  for (size_t i = 0; i < tracks_.size(); ++i) {
    const Track& t = tracks_[i];
    for (size_t w = 0; w < t.bins.size(); ++w) {
      sep() << fmt::format(R"({{"ph":"C","pid":{},"name":{},"ts":{:.6f},"args":{{"utilization":{:.4f}}}}})", t.chip,
                           nlohmann::json(t.name).dump(), us(Tick(w) * window_), t.bins[w] / double(window_));
    }
  }
  out << "\n]}\n";
}

}  // namespace tessera::sim
