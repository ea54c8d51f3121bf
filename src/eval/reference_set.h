#pragma once
// Prompt/reference sets for BLEU and chrF (`retort eval bleu --data`, the pipeline's evaluate
// stage): JSONL lines of {"prompt": ..., "reference": ...} or "references": [...], and a model's
// greedy one-line replies to the prompts.
#include <functional>
#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace retort::eval {

// The file's lines (a trailing \r dropped, no empty last line for a final newline).
std::vector<std::string> read_lines(const std::string& path);

// The data file's prompts and reference streams (every line needs as many references).
struct PromptSet {
  std::vector<std::string> prompts;
  std::vector<std::vector<std::string>> references;  // [stream][line]
};
PromptSet read_prompt_set(const std::string& path);

// Greedy continuations of each prompt, each ending at its first newline (one line per reference),
// each from an empty cache; on_progress(done) after each.
std::vector<std::string> greedy_line_replies(Transformer& model, KvCache& cache, const Tokenizer& tokenizer,
                                             const std::vector<std::string>& prompts, int max_tokens,
                                             const std::function<void(size_t)>& on_progress = {});

}  // namespace retort::eval
