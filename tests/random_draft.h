#pragma once
// A draft model for speculative-decoding tests: a random checkpoint of the target's config (weights
// wide enough that it sometimes agrees with the target and often not), written to a temporary
// folder that goes when the draft does.
#include <filesystem>
#include <memory>
#include <string>
#include <unistd.h>

#include "model/model_loader.h"
#include "model/random_init.h"

namespace retort::test {

struct RandomDraft {
  RandomDraft(const ModelConfig& config, Backend& backend, uint64_t seed) {
    dir = (std::filesystem::temp_directory_path() /
           ("retort-draft-" + std::to_string(::getpid()) + "-" + std::to_string(seed))).string();
    std::filesystem::remove_all(dir);
    RandomInitOptions init;
    init.seed = seed;
    init.dtype = DType::F32;
    init.stddev = 0.3;
    write_random_checkpoint(config, dir, init);
    model = load_model(dir, backend);
  }
  ~RandomDraft() { std::filesystem::remove_all(dir); }
  RandomDraft(const RandomDraft&) = delete;
  RandomDraft& operator=(const RandomDraft&) = delete;

  std::string dir;
  std::unique_ptr<LoadedModel> model;
};

}  // namespace retort::test
