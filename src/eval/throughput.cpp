#include "eval/throughput.h"

#include <algorithm>
#include <vector>

#include "engine/sampler.h"
#include "eval/timed_forward.h"
#include "util/error.h"

namespace retort {

SpeedResult measure_speed(Transformer& model, std::span<const int32_t> prompt, int64_t decode_tokens) {
  require(!prompt.empty(), ErrorKind::InvalidInput, "the speed prompt is empty");
  const int64_t length = static_cast<int64_t>(prompt.size()) + decode_tokens;
  require(length <= model.config().max_positions, ErrorKind::InvalidInput,
          "prompt {} + decode {} tokens exceed the model's {} positions", prompt.size(), decode_tokens,
          model.config().max_positions);
  KvCache cache(model.config(), length);
  warm_up(model, cache, prompt.first(1));
  std::vector<float> logits;
  KvSequence sequence;
  SpeedResult result;
  result.prompt_tokens = static_cast<int64_t>(prompt.size());
  result.decode_tokens = decode_tokens;
  const double prefill_seconds = time_prefill(model, cache, sequence, prompt, logits);
  result.prefill_tokens_per_second = static_cast<double>(prompt.size()) / std::max(prefill_seconds, 1e-9);
  if (decode_tokens > 0) {
    const double decode_seconds = time_greedy_decode(model, cache, sequence, argmax(logits), decode_tokens, logits);
    result.decode_tokens_per_second = static_cast<double>(decode_tokens) / std::max(decode_seconds, 1e-9);
  }
  return result;
}

}  // namespace retort
