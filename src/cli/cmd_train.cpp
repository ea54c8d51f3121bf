// `retort train CONFIG.yaml [--resume]`: language-model training / fine-tuning from a YAML config
// (see docs/training.md and configs/train/). The loop lives in src/train/trainer.cpp.
#include "cli/commands.h"
#include "dist/data_parallel.h"
#include "train/trainer.h"
#include "util/log.h"

namespace retort::cli {

void add_train_command(CLI::App& app) {
  struct Options {
    std::string config_path;
    bool resume = false;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("train", "Train or fine-tune a model from a YAML config");
  command->add_option("config", options->config_path, "Training config (YAML; see configs/train/)")->required();
  command->add_flag("--resume", options->resume,
                    "Continue from the newest checkpoint in checkpointing.dir (bitwise the same result as an "
                    "uninterrupted run with the same thread count)");
  command->callback([options] {
    std::vector<train::ConfigEntry> entries;
    const train::TrainConfig config = train::load_train_config(options->config_path, &entries);
    const train::TrainRunResult result = dist::run_on_ranks(config, entries, options->resume, [&](train::RankGroup* ranks) {
      return train::run_training(config, entries, {options->resume, ranks});
    });
    spdlog::info("trained {} steps, final loss {:.4f}; model in {}", result.steps, result.final_loss,
                 result.last_checkpoint);
  });
}

}  // namespace retort::cli
