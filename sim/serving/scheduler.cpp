#include "sim/serving/scheduler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <stdexcept>

namespace tessera::sim::serving {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A request in the replica. Its KV cache holds `computed` tokens; `generated` output tokens are
// out. A prefill computes `target()` tokens: the prompt, or after a preemption the prompt and
// the output so far (recompute); finishing it yields the next token. Then each decode step
// feeds the last token and yields one more.
struct Seq {
  size_t index = 0;  // into the requests
  int64_t prompt = 0, output = 0;
  int64_t computed = 0, generated = 0, blocks = 0;
  bool prefilling = true;
  int64_t target() const { return prompt + generated; }
};

}  // namespace

ServeResult serve(const std::vector<workloads::Request>& requests, const SchedulerConfig& config,
                  IterationCost& cost, const std::function<void(int64_t)>& progress) {
  if (config.max_running < 1) throw std::runtime_error("serving: at least one running sequence (max_running)");
  if (config.max_batched_tokens < 1) throw std::runtime_error("serving: at least one batched token (max_batched_tokens)");
  if (config.block_tokens < 1 || config.blocks < 1) throw std::runtime_error("serving: the KV cache needs blocks of at least one token");
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
  }

  ServeResult out;
  out.requests.resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const workloads::Request& r = requests[i];
    out.requests[i] = {r.id, r.arrival, -1, -1, -1, r.prompt_tokens, r.output_tokens, 0, false};
  }
  std::deque<Seq> waiting;  // arrived, not running: preempted ones at the front
  std::vector<Seq> running;  // in order of admission
  int64_t free_blocks = config.blocks, finished = 0;
  size_t next = 0;  // the next request to arrive
  double now = 0;
  std::vector<int64_t> in_batch(requests.size(), -1);  // a running request's work item this iteration

  // Frees a running sequence's blocks and sends it back to wait (recompute).
  auto preempt = [&](size_t k) {
    Seq s = running[k];
    running.erase(running.begin() + std::ptrdiff_t(k));
    free_blocks += s.blocks;
    s.blocks = 0, s.computed = 0, s.prefilling = true;
    ++out.requests[s.index].preemptions;
    waiting.push_front(s);
  };
  // Makes room for sequence k to hold `tokens` KV tokens by preempting the latest admitted
  // others; false when k itself had to go.
  auto reserve = [&](size_t k, int64_t tokens, int64_t& preempted) {
    const int64_t need = ceil_div(tokens, config.block_tokens) - running[k].blocks;
    while (need > free_blocks) {
      const size_t victim = running.size() - 1;
      ++preempted;
      preempt(victim);
      if (victim == k) return false;
    }
    running[k].blocks += std::max<int64_t>(need, 0);
    free_blocks -= std::max<int64_t>(need, 0);
    return true;
  };

  auto arrive = [&] {  // requests that have arrived by now join the queue
    for (; next < requests.size() && requests[next].arrival <= now; ++next) {
      const workloads::Request& r = requests[next];
      if (too_long(r)) {
        out.requests[next].rejected = true;
        ++finished;
        continue;
      }
      waiting.push_back({next, r.prompt_tokens, r.output_tokens, 0, 0, 0, true});
    }
  };

  while (finished < int64_t(requests.size())) {
    arrive();
    if (running.empty() && waiting.empty()) {  // idle until the next arrival
      now = requests[next].arrival;
      continue;
    }
    std::vector<SequenceWork> batch;
    int64_t budget = config.max_batched_tokens, preempted = 0;
    // Running sequences first, oldest first: a decode step each, or their prompt's next chunk.
    for (size_t k = 0; k < running.size() && budget > 0;) {
      Seq& s = running[k];
      const int64_t tokens = s.prefilling ? std::min(s.target() - s.computed, budget) : 1;
      if (!reserve(k, s.computed + tokens, preempted)) continue;  // it was preempted itself
      batch.push_back({int64_t(running[k].index), running[k].computed, tokens, running[k].prefilling});
      budget -= tokens;
      ++k;
    }
    // Then waiting ones in order while sequences, tokens and free blocks last (no preemption
    // to admit).
    while (!waiting.empty() && int64_t(running.size()) < config.max_running && budget > 0) {
      Seq s = waiting.front();
      const int64_t whole = s.target() - s.computed;
      if (!config.chunked_prefill && whole > budget) break;
      const int64_t tokens = std::min(whole, budget);
      const int64_t need = ceil_div(s.computed + tokens, config.block_tokens) - s.blocks;
      if (need > free_blocks) break;
      waiting.pop_front();
      s.blocks += need, free_blocks -= need;
      running.push_back(s);
      batch.push_back({int64_t(s.index), s.computed, tokens, true});
      budget -= tokens;
    }
    if (batch.empty()) {
      // Nothing fits: the running set is empty and the head of the queue waits for blocks that
      // only finishing sequences free, which cannot happen with nothing running.
      throw std::runtime_error("serving: no sequence can be scheduled (KV cache too small for the waiting request)");
    }

    const IterationCostResult c = cost.cost(batch);
    const double end = now + c.seconds;
    IterationRecord rec;
    rec.start = now, rec.seconds = c.seconds, rec.joules = c.joules, rec.preempted = preempted;
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
      if (it->prefill && s.computed == s.target()) s.prefilling = false, produced = true;
      RequestResult& res = out.requests[s.index];
      if (produced) {
        ++s.generated;
        if (res.first_token < 0) res.first_token = end;
      }
      if (s.generated == s.output) {
        res.finished = end;
        free_blocks += s.blocks;
        running.erase(running.begin() + std::ptrdiff_t(k));
        ++finished;
        continue;
      }
      ++k;
    }
    now = end;
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
