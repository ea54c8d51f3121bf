#include "eval/throughput.h"

#include <algorithm>
#include <vector>

#include "engine/sampler.h"
#include "util/error.h"
#include "util/timer.h"

namespace retort {

SpeedResult measure_speed(Transformer& model, std::span<const int32_t> prompt, int64_t decode_tokens) {
  require(!prompt.empty(), ErrorKind::InvalidInput, "the speed prompt is empty");
  const int64_t length = static_cast<int64_t>(prompt.size()) + decode_tokens;
  require(length <= model.config().max_positions, ErrorKind::InvalidInput,
          "prompt {} + decode {} tokens exceed the model's {} positions", prompt.size(), decode_tokens,
          model.config().max_positions);
  KvCache cache(model.config(), length);
  std::vector<float> logits;
  {
    KvSequence warm_up;
    cache.reserve(warm_up, 1);
    SequenceChunk chunk{&warm_up, prompt.first(1), LogitsWanted::Last};
    model.forward({&chunk, 1}, cache, logits);
    cache.release(warm_up);
  }
  KvSequence sequence;
  cache.reserve(sequence, length);
  SpeedResult result;
  result.prompt_tokens = static_cast<int64_t>(prompt.size());
  Timer timer;
  SequenceChunk prefill{&sequence, prompt, LogitsWanted::Last};
  model.forward({&prefill, 1}, cache, logits);
  result.prefill_tokens_per_second = static_cast<double>(prompt.size()) / std::max(timer.seconds(), 1e-9);
  timer.reset();
  int32_t token = 0;
  for (int64_t i = 0; i < decode_tokens; ++i) {
    token = argmax(logits);
    SequenceChunk step{&sequence, std::span<const int32_t>(&token, 1), LogitsWanted::Last};
    model.forward({&step, 1}, cache, logits);
  }
  result.decode_tokens = decode_tokens;
  result.decode_tokens_per_second = decode_tokens > 0 ? static_cast<double>(decode_tokens) / std::max(timer.seconds(), 1e-9) : 0;
  return result;
}

}  // namespace retort
