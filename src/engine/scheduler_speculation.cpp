// Speculative decoding in the scheduler: before each step every decoding sequence gets a proposal
// from the draft (all of them in the same draft forwards), its decode chunk carries the pending
// token and the proposal, and the step's one target forward verifies them all (engine/speculative.h).
#include "engine/scheduler_sequence.h"
#include "util/error.h"
#include "util/log.h"

namespace retort {

void Scheduler::propose_drafts() {
  std::vector<DraftTask> tasks;
  for (auto& owned : running_) {
    Sequence& s = *owned;
    s.proposal.tokens.clear();
    s.proposal.distributions.clear();
    // A grammar masks the target's logits token by token; its sequences decode one token at a time.
    if (s.done || s.pending() != 1 || s.request.grammar) continue;
    const int64_t room = options_.context - static_cast<int64_t>(s.tokens.size());  // positions after pending
    const int64_t budget = static_cast<int64_t>(s.request.max_tokens) - s.generated() - 1;
    const int k = static_cast<int>(std::min<int64_t>({options_.drafter->draft_tokens(), room, budget}));
    if (k < 1) continue;
    tasks.push_back({&s.draft, s.tokens, static_cast<size_t>(s.prompt_size), &s.draft_sampler, k, &s.proposal});
  }
  if (tasks.empty()) return;
  try {
    options_.drafter->propose(tasks);
  } catch (const std::exception& error) {  // the draft failing must not take the requests with it
    spdlog::error("draft step failed, decoding without it this step: {}", error.what());
    for (DraftTask& task : tasks) task.out->tokens.clear();
  }
}

// Positions a decoding sequence's next chunk takes: its pending token and its proposal.
int64_t Scheduler::decode_positions(const Sequence& s) const {
  return 1 + static_cast<int64_t>(s.proposal.tokens.size());
}

SequenceChunk Scheduler::decode_chunk(Sequence& s) {
  const auto pending = std::span<const int32_t>(s.tokens).subspan(static_cast<size_t>(s.kv.length), 1);
  if (s.proposal.tokens.empty()) return {&s.kv, pending, LogitsWanted::Last};
  s.verify_tokens.assign(pending.begin(), pending.end());
  s.verify_tokens.insert(s.verify_tokens.end(), s.proposal.tokens.begin(), s.proposal.tokens.end());
  return {&s.kv, s.verify_tokens, LogitsWanted::All};
}

// rows: the target's logits after the pending token and after each proposed token.
void Scheduler::verify_and_emit(Sequence& s, std::span<const float> rows) {
  const int64_t vocab = model_.config().vocab_size;
  const size_t k = s.proposal.tokens.size();
  std::vector<int32_t> history = s.tokens;  // ends with the pending token
  history.insert(history.end(), s.proposal.tokens.begin(), s.proposal.tokens.end());
  const DraftVerdict verdict = verify_proposal(s.proposal, rows, vocab, s.sampler, history, static_cast<size_t>(s.prompt_size));
  // The cache holds the pending token and the kept proposals; rejected positions are written over.
  s.kv.length = static_cast<int64_t>(s.tokens.size()) + verdict.accepted;
  {
    std::lock_guard lock(stats_mutex_);
    stats_.speculation.proposed += static_cast<int64_t>(k);
    stats_.speculation.accepted += verdict.accepted;
    stats_.speculation.target_forwards += 1;
    stats_.speculation.emitted += verdict.accepted + 1;
  }
  const auto row = [&](int i) { return rows.subspan(static_cast<size_t>(i * vocab), static_cast<size_t>(vocab)); };
  // Indexed once the tokens match the cache (before emitting, which may end the sequence).
  cache_.index_full_blocks(s.kv, std::span<const int32_t>(history).first(static_cast<size_t>(s.kv.length)));
  for (int i = 0; i < verdict.accepted && !s.done; ++i) emit(s, s.proposal.tokens[static_cast<size_t>(i)], row(i));
  if (!s.done) emit(s, verdict.next, row(verdict.accepted));
  s.proposal.tokens.clear();
}

void Scheduler::release_kv(Sequence& s) {
  cache_.release(s.kv);
  if (options_.drafter != nullptr) options_.drafter->release(s.draft);
}

}  // namespace retort
