// `retort init --config CONFIG.json --out DIR [--seed N]`: a randomly initialised HF checkpoint.
#include <filesystem>

#include "cli/commands.h"
#include "io/model_config.h"
#include "model/random_init.h"
#include "util/error.h"
#include "util/log.h"
#include "util/output_path.h"
#include "util/timer.h"

namespace retort::cli {

namespace {

struct InitOptions {
  std::string config_path;
  std::string out_dir;
  uint64_t seed = 0;
  std::string dtype = "bf16";
  std::string tokenizer_dir;
};

void run_init(const InitOptions& options) {
  namespace fs = std::filesystem;
  check_output_directory(options.out_dir, ExistingContents::Refuse, {options.config_path, options.tokenizer_dir},
                         "--out");
  ModelConfig config = load_hf_config(options.config_path);
  RandomInitOptions init;
  init.seed = options.seed;
  init.dtype = options.dtype == "f32" ? DType::F32 : options.dtype == "f16" ? DType::F16 : DType::BF16;
  Timer timer;
  write_random_checkpoint(config, options.out_dir, init);
  if (!options.tokenizer_dir.empty()) {
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::path source = fs::path(options.tokenizer_dir) / name;
      require(fs::exists(source), ErrorKind::NotFound, "--tokenizer: '{}' not found", source.string());
      fs::copy_file(source, fs::path(options.out_dir) / name, fs::copy_options::overwrite_existing);
    }
  }
  spdlog::info("wrote {} ({} parameters, {}) in {:.1f}s", options.out_dir, config.parameter_count(), options.dtype,
               timer.seconds());
}

}  // namespace

void add_init_command(CLI::App& app) {
  auto options = std::make_shared<InitOptions>();
  auto* command = app.add_subcommand("init", "Write a randomly initialised checkpoint for a config.json");
  command->add_option("--config", options->config_path, "Hugging Face config.json (see configs/models/)")->required();
  command->add_option("--out", options->out_dir, "Output directory")->required();
  command->add_option("--seed", options->seed, "Random seed")->capture_default_str();
  command->add_option("--dtype", options->dtype, "Weight type")->check(CLI::IsMember({"bf16", "f16", "f32"}))->capture_default_str();
  command->add_option("--tokenizer", options->tokenizer_dir, "Copy tokenizer.json and tokenizer_config.json from this directory");
  command->callback([options] { run_init(*options); });
}

}  // namespace retort::cli
