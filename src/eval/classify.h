#pragma once
// Intent classification with a causal LM (the BANKING77 scenario): each query becomes the prompt
// "<text>\nLabel:" (as `retort train` formats CSV data) and every candidate label " <label>" + EOS
// is scored by its log-likelihood after it; the prediction is the most likely candidate, so the
// output is always a valid label. The prompt is evaluated once; then all candidates continue from
// copies of its cached positions in one batched forward, so the LM head is one matmul over every
// candidate's rows (in groups, when the KV cache cannot hold them all at once).
#include <cstdint>
#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace retort {

struct LabelledText {
  std::string text;
  std::string label;
};

// A CSV file with a header naming text_column and label_column (RFC 4180 quoting); errors name
// the file and line.
std::vector<LabelledText> read_labelled_csv(const std::string& path, const std::string& text_column,
                                            const std::string& label_column);

struct ClassifyResult {
  int64_t examples = 0;
  int64_t correct = 0;
  double accuracy = 0;
  double p50_ms = 0, p99_ms = 0;   // per query (prompt + every candidate)
  double queries_per_second = 0;
  std::vector<int32_t> predictions;  // index into the labels
};

// Buffers score_candidates reuses across queries. The candidates' logits are [rows × vocab]: 100s
// of MiB for a 151,936-entry vocabulary, so they are allocated once, and kept apart from the
// prompt's row so that they are not shrunk and zero-filled again for every query.
struct CandidateScratch {
  std::vector<float> prompt_logits;
  std::vector<float> candidate_logits;
};

// log p(candidate | prompt) for each candidate token sequence (none empty): the prompt is
// evaluated once and every candidate continues from a copy of its cached positions, as many per
// forward as the cache's free blocks allow. All blocks taken from `cache` are given back.
std::vector<double> score_candidates(Transformer& model, KvCache& cache, const std::vector<int32_t>& prompt,
                                    const std::vector<std::vector<int32_t>>& candidates, CandidateScratch& scratch);
std::vector<double> score_candidates(Transformer& model, KvCache& cache, const std::vector<int32_t>& prompt,
                                    const std::vector<std::vector<int32_t>>& candidates);

// The token ids of candidate " <label>" + EOS, and the prompt "<text>\nLabel:" (BOS, no chat
// template suffix), as `classify` scores them.
std::vector<std::vector<int32_t>> candidate_tokens(const Tokenizer& tokenizer, const std::vector<std::string>& labels);
std::vector<int32_t> classify_prompt(const Tokenizer& tokenizer, const std::string& text);

// KV cache positions that hold the longest example's prompt and a copy of it continued by every
// candidate at once (one batched forward per query), in blocks of block_size.
int64_t classify_cache_tokens(const Tokenizer& tokenizer, const std::vector<std::string>& labels,
                              const std::vector<LabelledText>& examples, int64_t block_size);

// Scores every example against every label. Labels not in `labels` are an error naming them.
ClassifyResult classify(Transformer& model, KvCache& cache, const Tokenizer& tokenizer,
                        const std::vector<std::string>& labels, const std::vector<LabelledText>& examples);

}  // namespace retort
