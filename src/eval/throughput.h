#pragma once
// Prefill and decode speed of one model on one sequence, the two numbers a weight type trades
// accuracy for: a prompt evaluated in one batch, then greedy single-token steps.
#include <cstdint>
#include <span>

#include "model/transformer.h"

namespace retort {

struct SpeedResult {
  int64_t prompt_tokens = 0;
  int64_t decode_tokens = 0;
  double prefill_tokens_per_second = 0;
  double decode_tokens_per_second = 0;
};

// Evaluates `prompt` (one forward), then `decode_tokens` greedy steps, each timed as a whole.
// A first short forward, untimed, takes page faults and thread start-up out of the numbers.
SpeedResult measure_speed(Transformer& model, std::span<const int32_t> prompt, int64_t decode_tokens);

}  // namespace retort
