// Feeds arbitrary bytes as a `retort train` / `retort distill` YAML config. Text that is not a
// usable config must come back as retort::Error naming what is wrong (a YAML exception, a crash or
// a deep-nesting stack overflow escaping the parser is a finding).
#include <cstddef>
#include <cstdint>
#include <string>

#include "train/train_config.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)retort::train::parse_train_config(text, "fuzz/config.yaml", "/nonexistent-fuzz-base");
  } catch (const retort::Error&) {
  }
  return 0;
}
