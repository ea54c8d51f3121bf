// Feeds arbitrary bytes as config.json. Bytes that are not JSON are nlohmann's to reject; JSON
// that is not a usable config must come back as retort::Error. Anything else escaping
// parse_hf_config (including an nlohmann type error from a careless get<>) is a finding.
#include <cstddef>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "io/model_config.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  try {
    retort::ModelConfig config = retort::parse_hf_config(root, "fuzz/config.json");
    retort::validate_model_config(config, "fuzz/config.json");
    // A valid config must survive the trip back to config.json and count its parameters safely.
    retort::ModelConfig again = retort::parse_hf_config(retort::to_hf_config(config), "round trip");
    retort::validate_model_config(again, "round trip");
    if (again.parameter_count() != config.parameter_count()) __builtin_trap();
  } catch (const retort::Error&) {
  }
  return 0;
}
