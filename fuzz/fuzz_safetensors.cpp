// Feeds arbitrary bytes to the safetensors parser. A retort::Error is the parser rejecting bad
// input, as it should; any other exception, crash or sanitizer report is a finding.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "io/safetensors.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::map<std::string, std::string> metadata;
  try {
    auto tensors = retort::SafetensorsFile::parse({data, size}, "fuzz-input.safetensors", &metadata);
    // Touch every byte each accepted view claims, so a span past the buffer trips ASan.
    uint64_t checksum = 0;
    for (const auto& tensor : tensors) {
      for (size_t i = 0; i < tensor.size_bytes; ++i) checksum += tensor.data[i];
      checksum += static_cast<uint64_t>(tensor.element_count());
    }
    volatile uint64_t sink = checksum;
    (void)sink;
  } catch (const retort::Error&) {
  }
  return 0;
}
