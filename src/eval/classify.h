#pragma once
// Intent classification with a causal LM (the BANKING77 scenario): each query becomes the prompt
// "<text>\nLabel:" (as `retort train` formats CSV data) and every candidate label " <label>" + EOS
// is scored by its log-likelihood after it; the prediction is the most likely candidate, so the
// output is always a valid label. The prompt is evaluated once; each candidate continues from the
// cached prompt.
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

// log p(candidate | prompt) for each candidate token sequence: the prompt is evaluated once and
// each candidate continues from its cached positions.
std::vector<double> score_candidates(Transformer& model, KvCache& cache, const std::vector<int32_t>& prompt,
                                    const std::vector<std::vector<int32_t>>& candidates);

// Scores every example against every label. Labels not in `labels` are an error naming them.
ClassifyResult classify(Transformer& model, KvCache& cache, const Tokenizer& tokenizer,
                        const std::vector<std::string>& labels, const std::vector<LabelledText>& examples);

}  // namespace retort
