#pragma once
// How well a model drafts for another (speculative decoding): the target generates greedily after
// each prompt alone and again with the draft proposing, and the two runs' decode speeds and the
// draft's acceptance are compared. The pipeline reports this for every student against its teacher.
#include <cstdint>
#include <span>
#include <vector>

#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace retort {

struct DraftSpeedup {
  int draft_tokens = 0;              // K
  double acceptance_rate = 0;        // accepted ÷ proposed draft tokens
  double tokens_per_forward = 0;     // tokens each target verification produced
  double decode_tokens_per_second = 0;        // the target with the draft
  double alone_decode_tokens_per_second = 0;  // the target alone, same prompts and lengths
  double speedup() const {
    return alone_decode_tokens_per_second > 0 ? decode_tokens_per_second / alone_decode_tokens_per_second : 0;
  }
};

// Greedy generation of up to `decode_tokens` after each prompt, with `draft_tokens` proposed per
// target forward (greedy: both runs produce the same tokens, so they decode the same number).
DraftSpeedup measure_draft_speedup(Transformer& target, Transformer& draft, const Tokenizer& tokenizer,
                                   const std::vector<std::vector<int32_t>>& prompts, int decode_tokens, int draft_tokens);

}  // namespace retort
