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

void Trace::labelled(int track, std::string name, Tick start, Tick end, std::string args) {
  labelled_.push_back({track, std::move(name), start, end, std::move(args)});
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
  // Lanes: a slice goes to the first lane of its track whose last slice has ended. Lane 0 is
  // the track's own thread id; further lanes get ids after every track's.
  std::vector<size_t> order(slices_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return slices_[a].track != slices_[b].track ? slices_[a].track < slices_[b].track
                                                : slices_[a].start < slices_[b].start;
  });
  std::vector<std::vector<Tick>> lane_end(tracks_.size());
  std::vector<std::vector<size_t>> lane_tid(tracks_.size());
  std::vector<size_t> tid_of(slices_.size());
  size_t next_tid = tracks_.size();
  for (size_t i : order) {
    const Slice& s = slices_[i];
    auto& ends = lane_end[size_t(s.track)];
    size_t lane = 0;
    while (lane < ends.size() && ends[lane] > s.start) ++lane;
    if (lane == ends.size()) {
      ends.push_back(0);
      lane_tid[size_t(s.track)].push_back(lane == 0 ? size_t(s.track) : next_tid++);
    }
    ends[lane] = s.end;
    tid_of[i] = lane_tid[size_t(s.track)][lane];
  }
  for (size_t i = 0; i < tracks_.size(); ++i) {
    const Track& t = tracks_[i];
    sep() << fmt::format(R"({{"ph":"M","name":"thread_name","pid":{},"tid":{},"args":{{"name":{}}}}})", t.chip, i,
                         nlohmann::json(t.name).dump());
    for (size_t lane = 1; lane < lane_tid[i].size(); ++lane) {
      sep() << fmt::format(R"({{"ph":"M","name":"thread_name","pid":{},"tid":{},"args":{{"name":{}}}}})", t.chip,
                           lane_tid[i][lane], nlohmann::json(fmt::format("{} #{}", t.name, lane + 1)).dump());
    }
  }
  for (size_t i = 0; i < slices_.size(); ++i) {
    const Slice& s = slices_[i];
    const Track& t = tracks_[size_t(s.track)];
    sep() << fmt::format(R"({{"ph":"X","pid":{},"tid":{},"ts":{:.6f},"dur":{:.6f},"name":"{}"}})", t.chip, tid_of[i],
                         us(s.start), us(s.end - s.start), s.name);
  }
  for (const Labelled& s : labelled_) {
    const Track& t = tracks_[size_t(s.track)];
    sep() << fmt::format(R"({{"ph":"X","pid":{},"tid":{},"ts":{:.6f},"dur":{:.6f},"name":{},"args":{}}})", t.chip,
                         s.track, us(s.start), us(s.end - s.start), nlohmann::json(s.name).dump(), s.args);
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
