#pragma once
// Speculative decoding with a draft model: a small model proposes k tokens, the target evaluates
// them all in one forward (k + 1 rows of logits), and the standard rejection-sampling rule keeps a
// prefix of them and draws one more token, so the text follows the target's own distribution at any
// temperature while one target forward yields 1 to k + 1 tokens. Greedy (temperature 0) keeps a
// proposed token exactly when it is the target's argmax: the same tokens as the target alone.
//
// The rule, per proposed token x drawn from the draft's distribution q, with the target's p at the
// same position (both after penalties, temperature and truncation: what each sampler would draw
// from): keep x with probability min(1, p(x) / q(x)); at the first rejection draw from
// max(0, p − q) renormalised and stop; when all k are kept, draw one more from the target's next p.
//
// The drafter owns the draft's KV cache. Each sequence it drafts for keeps its own draft-side
// sequence, brought up to the target's tokens before each proposal (after a rejection the draft
// keeps the common prefix and evaluates only what differs), so `run`, `chat` (turn after turn) and
// the server's scheduler (every running sequence in one batched draft forward) share this code.
#include <cstdint>
#include <span>
#include <vector>

#include "engine/generation.h"
#include "engine/sampler.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace retort {

struct DraftProposal {
  std::vector<int32_t> tokens;                   // proposed, in order (may be fewer than asked)
  std::vector<TokenDistribution> distributions;  // the draft's distribution each one was drawn from
};

// One sequence's request for a proposal.
struct DraftTask {
  CachedSequence* draft_sequence = nullptr;  // the draft's copy of this sequence, in the drafter's cache
  std::span<const int32_t> context;          // every token so far; the last one no model has evaluated yet
  size_t prompt_size = 0;                    // for the penalties' history
  Sampler* sampler = nullptr;                // the draft's own sampler: the target's params, its own seed
  int max_tokens = 0;                        // how many to propose (the drafter's k or fewer)
  DraftProposal* out = nullptr;
};

// Refuses a draft whose tokenizer differs from the target's in any real id (a vocabulary padded to a
// different size is fine), with the first difference in the message.
void check_draft_compatible(const Tokenizer& target, const Tokenizer& draft, const ModelConfig& target_config,
                            const ModelConfig& draft_config);

class Drafter {
 public:
  // `capacity_tokens` positions of draft KV cache (of `kv_type`), `draft_tokens` proposed per round,
  // prompts brought in `prefill_chunk` tokens per forward. A proposal ends before any id at or above
  // `target_vocab` (a draft's padded vocabulary may be larger than the target's).
  Drafter(Transformer& draft, int64_t target_vocab, int64_t capacity_tokens, int draft_tokens, DType kv_type,
          int64_t prefill_chunk = 512);

  int draft_tokens() const { return draft_tokens_; }
  // The draft model's vocabulary: the length of its logits rows, which its sampler reads.
  int64_t vocab() const { return draft_.config().vocab_size; }
  KvCache& cache() { return cache_; }
  // The draft-side sequence `generate` uses (run and chat draft for one sequence at a time).
  CachedSequence& single_sequence() { return single_; }

  // Fills each task's proposal; a task whose draft sequence cannot get KV blocks gets none (its
  // sequence then decodes without speculation this round). Every task is drafted in the same forwards.
  void propose(std::span<DraftTask> tasks);
  // Gives a sequence's draft KV blocks back.
  void release(CachedSequence& sequence) { cache_.release(sequence.kv); sequence.tokens.clear(); }

 private:
  void catch_up(std::span<DraftTask> tasks, std::vector<std::vector<float>>& last_rows);

  Transformer& draft_;
  int64_t target_vocab_;
  KvCache cache_;
  int draft_tokens_;
  int64_t prefill_chunk_;
  CachedSequence single_;
  std::vector<float> logits_;
};

// The rule above. `rows`: proposal.tokens.size() + 1 rows of target logits, row i following the
// context and the first i proposed tokens. `history`: the target's tokens through the whole
// proposal (penalties read the first context + i of them for row i). `sampler` is the target's.
struct DraftVerdict {
  int accepted = 0;  // proposed tokens kept
  int32_t next = 0;  // the token the target drew after them
};
DraftVerdict verify_proposal(const DraftProposal& proposal, std::span<const float> rows, int64_t vocab,
                             Sampler& sampler, std::span<const int32_t> history, size_t prompt_size);

// A draft sampler for a sequence: the same params as the target's, a seed of its own, so its draws
// are independent of the target's.
Sampler make_draft_sampler(const SamplingParams& params, int64_t vocab);

}  // namespace retort
