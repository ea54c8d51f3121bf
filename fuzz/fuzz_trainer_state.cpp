// Feeds arbitrary bytes as a checkpoint's trainer_state.json, which `--resume` reads first: a
// damaged file must come back as retort::Error saying so, never a crash or another exception.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "train/checkpoint.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/retort-fuzz-trainer-state-" + std::to_string(::getpid()) + ".json";
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return 0;
  std::fwrite(data, 1, size, file);
  std::fclose(file);
  try {
    (void)retort::train::read_trainer_state(path);
  } catch (const retort::Error&) {
  }
  return 0;
}
