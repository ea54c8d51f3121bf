#include "engine/speculative.h"

#include <algorithm>

#include "util/error.h"

namespace retort {

namespace {
// An id that only pads a vocabulary to the model's size: no token, or the "[PAD<id>]" placeholder that
// GGUF converters (retort's and llama.cpp's) write for the ids a tokenizer.json leaves out.
bool is_padding(const Tokenizer& tokenizer, int32_t id) {
  return !tokenizer.is_token(id) || tokenizer.token_bytes(id) == "[PAD" + std::to_string(id) + "]";
}
}  // namespace

void check_draft_compatible(const Tokenizer& target, const Tokenizer& draft, const ModelConfig& target_config,
                            const ModelConfig& draft_config) {
  // R1-Distill-Qwen-1.5B pads its vocabulary to 151,936 ids and the 7B to 152,064: the same tokens.
  const int32_t size = std::min(target.vocab_size(), draft.vocab_size());
  const Tokenizer& larger = target.vocab_size() > size ? target : draft;
  for (int32_t id = size; id < larger.vocab_size(); ++id)
    require(is_padding(larger, id), ErrorKind::InvalidInput,
            "the draft's tokenizer has {} tokens and the target's {}, and token {} ({:?}) of the {}'s is a real "
            "token, not padding; a draft must share the target's tokenizer (pick a draft from the same model "
            "family, e.g. a distilled student of the target)", draft.vocab_size(), target.vocab_size(), id,
            larger.token_bytes(id).substr(0, 40), &larger == &target ? "target" : "draft");
  for (int32_t id = 0; id < size; ++id) {
    require(draft.token_bytes(id) == target.token_bytes(id) && draft.is_special(id) == target.is_special(id),
            ErrorKind::InvalidInput,
            "token {} is {:?} in the target's tokenizer and {:?} in the draft's; a draft must share the "
            "target's tokenizer", id, target.token_bytes(id).substr(0, 40), draft.token_bytes(id).substr(0, 40));
  }
  require(size <= target_config.vocab_size && size <= draft_config.vocab_size, ErrorKind::InvalidInput,
          "the tokenizer has {} tokens but the models' vocabularies hold {} (target) and {} (draft)", size,
          target_config.vocab_size, draft_config.vocab_size);
}

Drafter::Drafter(Transformer& draft, int64_t target_vocab, int64_t capacity_tokens, int draft_tokens, DType kv_type,
                 int64_t prefill_chunk)
    : draft_(draft),
      target_vocab_(target_vocab),
      cache_(draft.config(), capacity_tokens, KvCache::kDefaultBlockSize, kv_type),
      draft_tokens_(draft_tokens),
      prefill_chunk_(prefill_chunk) {
  require(draft_tokens >= 1 && draft_tokens <= 32, ErrorKind::InvalidInput,
          "--draft-tokens must be 1-32 (tokens the draft proposes per target forward), got {}", draft_tokens);
  require(prefill_chunk >= 1, ErrorKind::Internal, "prefill chunk must be positive");
}

namespace {

// Keeps the longest prefix the draft sequence shares with `context`, leaving at least the last
// context token to evaluate (its logits are the first proposal's).
void keep_common_prefix(CachedSequence& sequence, std::span<const int32_t> context) {
  size_t common = 0;
  while (common < sequence.tokens.size() && common + 1 < context.size() && sequence.tokens[common] == context[common])
    ++common;
  sequence.tokens.resize(common);
  sequence.kv.length = static_cast<int64_t>(common);
}

}  // namespace

// Brings every task's draft sequence up to its context, all tasks in the same forwards, a chunk of
// each at a time; last_rows[i] gets the logits after task i's context (empty: task i cannot draft).
void Drafter::catch_up(std::span<DraftTask> tasks, std::vector<std::vector<float>>& last_rows) {
  const int64_t vocab = draft_.config().vocab_size;
  last_rows.assign(tasks.size(), {});
  std::vector<bool> active(tasks.size(), false);
  for (size_t i = 0; i < tasks.size(); ++i) {
    DraftTask& task = tasks[i];
    task.out->tokens.clear();
    task.out->distributions.clear();
    if (task.max_tokens < 1 || task.context.empty()) continue;
    keep_common_prefix(*task.draft_sequence, task.context);
    const auto missing = task.context.subspan(task.draft_sequence->tokens.size());
    const bool in_vocabulary = std::all_of(missing.begin(), missing.end(), [&](int32_t id) { return id < vocab; });
    // Room for the context and the proposals fed back (all but the last).
    const int64_t needed = static_cast<int64_t>(task.context.size()) + task.max_tokens - 1;
    active[i] = in_vocabulary && needed <= cache_.capacity_tokens() && cache_.reserve(task.draft_sequence->kv, needed);
  }
  std::vector<SequenceChunk> batch;
  std::vector<size_t> owners;
  for (;;) {
    batch.clear();
    owners.clear();
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (!active[i]) continue;
      CachedSequence& sequence = *tasks[i].draft_sequence;
      const auto missing = tasks[i].context.subspan(sequence.tokens.size());
      if (missing.empty()) continue;
      const size_t n = std::min(missing.size(), static_cast<size_t>(prefill_chunk_));
      batch.push_back({&sequence.kv, missing.first(n), n == missing.size() ? LogitsWanted::Last : LogitsWanted::None});
      owners.push_back(i);
    }
    if (batch.empty()) return;
    draft_.forward(batch, cache_, logits_);
    int64_t row = 0;
    for (size_t b = 0; b < batch.size(); ++b) {
      CachedSequence& sequence = *tasks[owners[b]].draft_sequence;
      sequence.tokens.insert(sequence.tokens.end(), batch[b].tokens.begin(), batch[b].tokens.end());
      if (batch[b].logits != LogitsWanted::Last) continue;
      last_rows[owners[b]].assign(logits_.begin() + row * vocab, logits_.begin() + (row + 1) * vocab);
      ++row;
    }
  }
}

void Drafter::propose(std::span<DraftTask> tasks) {
  const int64_t vocab = draft_.config().vocab_size;
  std::vector<std::vector<float>> rows;
  catch_up(tasks, rows);
  std::vector<SequenceChunk> batch;
  std::vector<size_t> owners;
  std::vector<int32_t> fed(tasks.size());
  for (int step = 0;; ++step) {
    batch.clear();
    owners.clear();
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (rows[i].empty()) continue;
      DraftTask& task = tasks[i];
      CachedSequence& sequence = *task.draft_sequence;
      task.out->distributions.emplace_back();
      TokenDistribution& q = task.out->distributions.back();
      task.sampler->distribution(rows[i], TokenHistory(sequence.tokens, task.prompt_size), q);
      const int32_t token = task.sampler->draw(q);
      rows[i].clear();
      if (token >= target_vocab_) {  // the target cannot read it: the proposal ends before it
        task.out->distributions.pop_back();
        continue;
      }
      task.out->tokens.push_back(token);
      // The last proposal needs no draft forward; the target checks it.
      if (static_cast<int>(task.out->tokens.size()) >= task.max_tokens) continue;
      fed[i] = token;
      batch.push_back({&sequence.kv, std::span<const int32_t>(&fed[i], 1), LogitsWanted::Last});
      owners.push_back(i);
    }
    if (batch.empty()) return;
    draft_.forward(batch, cache_, logits_);
    for (size_t b = 0; b < batch.size(); ++b) {
      const size_t i = owners[b];
      tasks[i].draft_sequence->tokens.push_back(fed[i]);
      rows[i].assign(logits_.begin() + static_cast<int64_t>(b) * vocab, logits_.begin() + static_cast<int64_t>(b + 1) * vocab);
    }
  }
}

DraftVerdict verify_proposal(const DraftProposal& proposal, std::span<const float> rows, int64_t vocab,
                             Sampler& sampler, std::span<const int32_t> history, size_t prompt_size) {
  const size_t k = proposal.tokens.size();
  require(rows.size() == (k + 1) * static_cast<size_t>(vocab) && history.size() >= k, ErrorKind::Internal,
          "verification got {} logits for {} proposed tokens", rows.size(), k);
  const size_t context = history.size() - k;
  TokenDistribution p;
  for (size_t i = 0; i <= k; ++i) {
    sampler.distribution(rows.subspan(i * static_cast<size_t>(vocab), static_cast<size_t>(vocab)),
                         TokenHistory(history.first(context + i), prompt_size), p);
    if (i == k) return {static_cast<int>(k), sampler.draw(p)};
    const int32_t x = proposal.tokens[i];
    const double q_x = proposal.distributions[i].probability(x);
    const double p_x = p.probability(x);
    // q_x > 0: x was drawn from q. Greedy: p_x and q_x are 0 or 1, so this keeps x iff it is p's argmax.
    if (p_x >= q_x || sampler.uniform() * q_x < p_x) continue;
    return {static_cast<int>(i), sampler.draw(p, &proposal.distributions[i])};
  }
  return {static_cast<int>(k), 0};  // not reached
}

Sampler make_draft_sampler(const SamplingParams& params, int64_t vocab) {
  SamplingParams draft = params;
  draft.seed = params.seed ^ 0x9E3779B97F4A7C15ULL;  // any fixed change: an independent stream
  return Sampler(draft, vocab);
}

}  // namespace retort
