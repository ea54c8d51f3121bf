// `retort tune distill CONFIG.yaml --trials N --steps S`: searches a distillation config's
// temperature, hard/soft weights and learning rate by successive halving over short real runs
// (src/train/distill_tuning.cpp). The table goes to stdout, progress to stderr. `retort tune
// serve` is in cmd_tune_serve.cpp.
#include <cstdio>
#include <memory>
#include <vector>

#include "cli/commands.h"
#include "cli/flag_checks.h"
#include "train/distill_tuning.h"
#include "util/error.h"
#include "util/log.h"
#include "util/output_path.h"

namespace retort::cli {

namespace {

struct TuneDistillCommand {
  train::DistillTuneOptions tune;
  std::vector<double> temperature, soft_weight, lr;  // LOW,HIGH; empty: the defaults
};

train::SearchRange range_flag(const std::vector<double>& values, const char* flag, train::SearchRange fallback) {
  if (values.empty()) return fallback;
  require(values.size() == 2, ErrorKind::InvalidInput, "{} takes LOW,HIGH (two numbers), got {} values", flag,
          values.size());
  return {values[0], values[1]};
}

void run_tune_distill(TuneDistillCommand& command) {
  train::DistillTuneOptions& tune = command.tune;
  check_output_directory(tune.out_dir, ExistingContents::Allow, {tune.config_path}, "--out");
  tune.space.temperature = range_flag(command.temperature, "--temperature", tune.space.temperature);
  tune.space.soft_weight = range_flag(command.soft_weight, "--soft-weight", tune.space.soft_weight);
  tune.space.lr = range_flag(command.lr, "--lr", tune.space.lr);
  const train::DistillTuneResult result = train::tune_distillation(tune);
  std::fputs(("\n" + result.table_markdown).c_str(), stdout);
  spdlog::info("tune: table in {}/tune.md{}", tune.out_dir,
               result.best_config_path.empty() ? "" : ", best config in " + result.best_config_path);
  // A search the time limit cut short has a provisional winner: the exit says so.
  if (!result.complete) {
    std::fprintf(stderr, "error: --time-limit-s stopped the search after %lld of %lld trial runs; run the same command "
                 "again to continue it\n", static_cast<long long>(result.runs_done),
                 static_cast<long long>(result.runs_planned));
    set_exit_code(1);
  }
}

}  // namespace

void add_tune_command(CLI::App& app) {
  auto* tune = app.add_subcommand("tune", "Search settings automatically: `tune distill` for a distillation config, "
                                          "`tune serve` for a server under load");
  tune->require_subcommand(1);
  auto command = std::make_shared<TuneDistillCommand>();
  train::DistillTuneOptions& o = command->tune;
  o.out_dir = "runs/tune-distill";
  auto* distill = tune->add_subcommand(
      "distill", "Successive halving over temperature, hard/soft weights and learning rate of a `retort distill` "
                 "config, scored on validation loss; rerun the same command to continue an interrupted search");
  distill->add_option("config", o.config_path, "Distillation config (YAML; see configs/distill/)")->required();
  distill->add_option("--trials", o.trials, "Settings to try (halved at each rung)")
      ->required()->check(integer_in(1, 4096));
  distill->add_option("--steps", o.steps, "Steps of the last rung (earlier rungs stop at a half, a quarter, ...)")
      ->required()->check(integer_in(1, 100000000));
  distill->add_option("--seed", o.seed, "Seed of the sampled settings")->capture_default_str();
  distill->add_option("--out", o.out_dir, "Directory for the trials, tune-state.json, tune.md and best.yaml")
      ->capture_default_str();
  distill->add_option("--time-limit-s", o.time_limit_seconds, "Start no trial run after this many seconds (0: no limit)")
      ->check(number_in(0, 365 * 86400.0))->capture_default_str();
  distill->add_option("--temperature", command->temperature, "LOW,HIGH of the temperature, log-uniform (default 1,8)")
      ->delimiter(',')->expected(2);
  distill->add_option("--soft-weight", command->soft_weight,
                      "LOW,HIGH of the soft-loss weight, uniform; hard = 1 − soft (default 0.1,0.9)")
      ->delimiter(',')->expected(2);
  distill->add_option("--lr", command->lr, "LOW,HIGH of the learning rate, log-uniform (default: the config's "
                                           "optimizer.lr ÷ √10 to × √10)")
      ->delimiter(',')->expected(2);
  distill->callback([command] { run_tune_distill(*command); });
  add_tune_serve_command(*tune);
}

}  // namespace retort::cli
