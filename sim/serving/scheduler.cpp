#include "sim/serving/scheduler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <map>
#include <stdexcept>

namespace tessera::sim::serving {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A request in the replica. Its KV cache holds `computed` tokens, of which the first `shared`
// blocks are its prefix group's cached ones and the rest its own `blocks`; `generated` output
// tokens are out. A prefill computes `target()` tokens: the prompt, or after a preemption by
// recompute the prompt and the output so far; finishing it yields the next token. Then each
// decode step feeds the last token and yields one more. A swapped sequence's blocks are in host
// memory.
struct Seq {
  size_t index = 0;  // into the requests
  int64_t prompt = 0, output = 0;
  int64_t computed = 0, generated = 0, blocks = 0, shared = 0;
  bool prefilling = true, swapped = false;
  int64_t target() const { return prompt + generated; }
};

// A prefix group's cached blocks and the running sequences using them.
struct Prefix {
  int64_t blocks = 0, users = 0;
  int64_t last_use = 0;  // iteration
};

}  // namespace

ServeResult serve(const std::vector<workloads::Request>& requests, const SchedulerConfig& config,
                  IterationCost& cost, const std::function<void(int64_t)>& progress) {
  if (config.max_running < 1) throw std::runtime_error("serving: at least one running sequence (max_running)");
  if (config.max_batched_tokens < 1) throw std::runtime_error("serving: at least one batched token (max_batched_tokens)");
  if (config.block_tokens < 1 || config.blocks < 1) throw std::runtime_error("serving: the KV cache needs blocks of at least one token");
  const bool swapping = config.preemption == SchedulerConfig::Preemption::Swap;
  if (swapping && !(config.swap.bandwidth > 0 && config.swap.block_bytes > 0 && config.swap.blocks > 0))
    throw std::runtime_error("serving: swap preemption needs a host link with bandwidth and host space for blocks");
  auto too_long = [&](const workloads::Request& r) {
    return config.max_context > 0 && r.prompt_tokens + r.output_tokens > config.max_context;
  };
  for (size_t i = 0; i < requests.size(); ++i) {
    const workloads::Request& r = requests[i];
    if (i > 0 && r.arrival < requests[i - 1].arrival)
      throw std::runtime_error(fmt::format("serving: request {} arrives before the one listed before it", r.id));
    if (too_long(r)) continue;  // rejected on arrival
    const int64_t need = ceil_div(r.prompt_tokens + r.output_tokens, config.block_tokens);
    if (need > config.blocks)
      throw std::runtime_error(fmt::format(
          "serving: request {} ({} prompt and {} output tokens) needs {} KV-cache blocks of {} tokens; the replica has {}",
          r.id, r.prompt_tokens, r.output_tokens, need, config.block_tokens, config.blocks));
    if (!config.chunked_prefill && r.prompt_tokens + r.output_tokens > config.max_batched_tokens)
      throw std::runtime_error(fmt::format(
          "serving: request {} would prefill up to {} tokens at once, above the {} batched tokens an iteration takes; "
          "enable chunked prefill or raise the limit",
          r.id, r.prompt_tokens + r.output_tokens, config.max_batched_tokens));
    if (config.arrives_prefilled && r.output_tokens < 2)
      throw std::runtime_error(fmt::format("serving: request {} arrives at a decode pool with nothing to decode", r.id));
  }

  ServeResult out;
  out.requests.resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const workloads::Request& r = requests[i];
    out.requests[i].id = r.id, out.requests[i].arrival = r.arrival;
    out.requests[i].prompt_tokens = r.prompt_tokens, out.requests[i].output_tokens = r.output_tokens;
  }
  std::deque<Seq> waiting;  // arrived, not running: preempted ones at the front
  std::vector<Seq> running;  // in order of admission
  std::map<int64_t, Prefix> prefixes;
  int64_t free_blocks = config.blocks, host_free = config.swap.blocks, finished = 0, iteration = 0;
  size_t next = 0;  // the next request to arrive
  double now = 0;
  std::vector<int64_t> in_batch(requests.size(), -1);  // a running request's work item this iteration
  IterationRecord rec;

  // Takes `need` free blocks, evicting cached prefixes no sequence uses (least recently used
  // first) when the free ones are too few; false (nothing taken) when even that is not enough.
  auto take = [&](int64_t need) {
    if (need <= 0) return true;
    while (need > free_blocks) {
      auto lru = prefixes.end();
      for (auto it = prefixes.begin(); it != prefixes.end(); ++it) {
        if (it->second.users == 0 && it->second.blocks > 0 && (lru == prefixes.end() || it->second.last_use < lru->second.last_use))
          lru = it;
      }
      if (lru == prefixes.end()) return false;
      free_blocks += lru->second.blocks;
      lru->second.blocks = 0;
    }
    free_blocks -= need;
    return true;
  };
  auto release_prefix = [&](Seq& s) {
    if (s.shared == 0) return;
    Prefix& p = prefixes.at(requests[s.index].prefix_group);
    --p.users, p.last_use = iteration;
    s.shared = 0;
  };
  // Frees a running sequence's blocks and sends it back to wait: its KV cache to host memory
  // when swapping and the host has room, else dropped (recompute).
  auto preempt = [&](size_t k) {
    Seq s = running[k];
    running.erase(running.begin() + std::ptrdiff_t(k));
    const int64_t held = s.blocks + s.shared;
    free_blocks += s.blocks;
    release_prefix(s);
    ++out.requests[s.index].preemptions;
    if (swapping && held <= host_free) {
      host_free -= held, s.blocks = held, s.swapped = true;
      rec.swapped_out += held;
      ++out.requests[s.index].swaps;
    } else {
      s.blocks = 0, s.computed = 0, s.prefilling = true;
    }
    waiting.push_front(s);
  };
  // Makes room for sequence k to hold `tokens` KV tokens by preempting the latest admitted
  // others; false when k itself had to go.
  auto reserve = [&](size_t k, int64_t tokens) {
    const int64_t need = ceil_div(tokens, config.block_tokens) - running[k].blocks - running[k].shared;
    while (!take(need)) {
      const size_t victim = running.size() - 1;
      ++rec.preempted;
      preempt(victim);
      if (victim == k) return false;
    }
    running[k].blocks += std::max<int64_t>(need, 0);
    return true;
  };
  // A fresh (or recomputing) sequence's prompt blocks found in its group's prefix cache: at
  // most its prefix's full blocks, and never the whole prompt (its last token is computed to
  // give the next).
  auto reuse_prefix = [&](Seq& s) {
    const workloads::Request& r = requests[s.index];
    if (!config.prefix_caching || r.prefix_group < 0 || s.computed > 0) return;
    Prefix& p = prefixes[r.prefix_group];
    const int64_t hit = std::min({p.blocks, r.prefix_tokens / config.block_tokens, (s.target() - 1) / config.block_tokens});
    if (hit <= 0) return;
    s.shared = hit, s.computed = hit * config.block_tokens;
    ++p.users, p.last_use = iteration;  // pinned: admitting it must not evict it
  };
  // After a prefill chunk: the full blocks of the prefix it computed join the group's cache
  // when they extend it (the sequence's own blocks then become shared ones).
  auto extend_prefix = [&](Seq& s) {
    const workloads::Request& r = requests[s.index];
    if (!config.prefix_caching || r.prefix_group < 0) return;
    Prefix& p = prefixes[r.prefix_group];
    const int64_t full = std::min(s.computed, r.prefix_tokens) / config.block_tokens;
    if (full <= p.blocks || s.shared != p.blocks) return;  // nothing new, or it computed a copy
    if (s.shared == 0 && p.blocks == 0) ++p.users;
    const int64_t moved = full - p.blocks;
    s.blocks -= moved, s.shared = full, p.blocks = full, p.last_use = iteration;
  };

  auto arrive = [&] {  // requests that have arrived by now join the queue
    for (; next < requests.size() && requests[next].arrival <= now; ++next) {
      const workloads::Request& r = requests[next];
      if (too_long(r)) {
        out.requests[next].rejected = true;
        ++finished;
        continue;
      }
      Seq s{next, r.prompt_tokens, r.output_tokens};
      if (config.arrives_prefilled) s.computed = r.prompt_tokens, s.generated = 1, s.prefilling = false;
      waiting.push_back(s);
    }
  };

  while (finished < int64_t(requests.size())) {
    arrive();
    if (running.empty() && waiting.empty()) {  // idle until the next arrival
      now = requests[next].arrival;
      continue;
    }
    std::vector<SequenceWork> batch;
    int64_t budget = config.max_batched_tokens;
    rec = {};
    // Running sequences first, oldest first: a decode step each, or their prompt's next chunk.
    for (size_t k = 0; k < running.size() && budget > 0;) {
      Seq& s = running[k];
      const int64_t tokens = s.prefilling ? std::min(s.target() - s.computed, budget) : 1;
      if (!reserve(k, s.computed + tokens)) continue;  // it was preempted itself
      batch.push_back({int64_t(running[k].index), running[k].computed, tokens, running[k].prefilling});
      budget -= tokens;
      ++k;
    }
    // Then waiting ones in order while sequences, tokens and free blocks last (no preemption
    // to admit); a swapped one comes back from host memory.
    while (!waiting.empty() && int64_t(running.size()) < config.max_running && budget > 0) {
      Seq s = waiting.front();
      reuse_prefix(s);
      const int64_t whole = s.prefilling ? s.target() - s.computed : 1;
      const int64_t tokens = std::min(whole, budget);
      const int64_t need = ceil_div(s.computed + tokens, config.block_tokens) - s.shared - (s.swapped ? 0 : s.blocks);
      if ((!config.chunked_prefill && whole > budget) || !take(need)) {
        release_prefix(s);
        break;
      }
      waiting.pop_front();
      out.requests[s.index].cached_tokens += s.shared * config.block_tokens;
      if (s.swapped) {
        host_free += s.blocks, rec.swapped_in += s.blocks;
        s.swapped = false, s.blocks = 0;
      }
      s.blocks += need;
      running.push_back(s);
      batch.push_back({int64_t(s.index), s.computed, tokens, s.prefilling});
      budget -= tokens;
    }
    if (batch.empty()) {
      // Nothing fits: the running set is empty and the head of the queue waits for blocks that
      // only finishing sequences free, which cannot happen with nothing running.
      throw std::runtime_error("serving: no sequence can be scheduled (KV cache too small for the waiting request)");
    }

    // Swaps run in series with the iteration (the copies its sequences wait for).
    IterationCostResult c = cost.cost(batch);
    for (const int64_t n : {rec.swapped_out, rec.swapped_in}) {
      const IterationCostResult x = config.swap.copy(n);
      c.seconds += x.seconds, c.joules += x.joules;
    }
    const double end = now + c.seconds;
    rec.start = now, rec.seconds = c.seconds, rec.joules = c.joules;
    rec.sequences = int64_t(batch.size());
    for (const SequenceWork& w : batch) {
      (w.prefill ? rec.prefill_tokens : rec.decode_tokens) += w.tokens;
      RequestResult& res = out.requests[size_t(w.request)];
      if (res.scheduled < 0) res.scheduled = now;
    }
    for (size_t i = 0; i < batch.size(); ++i) in_batch[size_t(batch[i].request)] = int64_t(i);
    // Apply the work to the running sequences that had some.
    for (size_t k = 0; k < running.size();) {
      Seq& s = running[k];
      const int64_t item = in_batch[s.index];
      if (item < 0) {
        ++k;
        continue;
      }
      in_batch[s.index] = -1;
      const SequenceWork* it = &batch[size_t(item)];
      s.computed += it->tokens;
      bool produced = !it->prefill;
      if (it->prefill) {
        extend_prefix(s);
        if (s.computed == s.target()) s.prefilling = false, produced = true;
      }
      RequestResult& res = out.requests[s.index];
      if (produced) {
        ++s.generated;
        if (res.first_token < 0) res.first_token = end;
      }
      if (s.generated == s.output) {
        res.finished = end;
        free_blocks += s.blocks;
        release_prefix(s);
        running.erase(running.begin() + std::ptrdiff_t(k));
        ++finished;
        continue;
      }
      ++k;
    }
    now = end;
    ++iteration;
    out.joules += c.joules;
    arrive();  // counted as waiting after the iteration
    rec.waiting = int64_t(waiting.size());
    rec.blocks_used = config.blocks - free_blocks;
    out.iterations.push_back(rec);
    if (progress) progress(finished);
  }
  out.seconds = now;
  return out;
}

}  // namespace tessera::sim::serving
