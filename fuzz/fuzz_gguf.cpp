// Feeds arbitrary bytes to the GGUF parser and, when a file is accepted, to the config and
// tokenizer readers built on it. A retort::Error is bad input rejected; anything else is a finding.
#include <cstddef>
#include <cstdint>

#include "io/gguf.h"
#include "io/gguf_config.h"
#include "tokenizer/gguf_vocab.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    retort::GgufFile gguf(std::span<const uint8_t>(data, size), "fuzz-input.gguf");
    // Touch every byte each accepted tensor claims, so a span past the buffer trips ASan.
    uint64_t checksum = 0;
    for (const auto& info : gguf.tensor_infos()) {
      const uint8_t* bytes = gguf.tensor_data(info);
      for (uint64_t i = 0; i < info.size_bytes; ++i) checksum += bytes[i];
    }
    volatile uint64_t sink = checksum;
    (void)sink;
    try {
      retort::model_config_from_gguf(gguf);
    } catch (const retort::Error&) {
    }
    retort::tokenizer_from_gguf(gguf);
  } catch (const retort::Error&) {
  }
  return 0;
}
