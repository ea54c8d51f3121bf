#include "train/distill_tuning.h"

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>

#include <fmt/format.h>

#include "train/checkpoint.h"
#include "train/config_yaml.h"
#include "train/distill.h"
#include "train/distill_tuning_report.h"
#include "train/successive_halving.h"
#include "train/tune_state.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"

namespace retort::train {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double four_digits(double value) { return std::stod(fmt::format("{:.4g}", value)); }

double log_uniform(const SearchRange& range, double unit) {
  return std::exp(std::log(range.low) + unit * (std::log(range.high) - std::log(range.low)));
}

// ---- the config as YAML: the user's file with the tuned keys set ----

void set_yaml_value(YAML::Node node, std::string_view dotted_path, const std::string& value) {
  const size_t dot = dotted_path.find('.');
  if (dot == std::string_view::npos) {
    node[std::string(dotted_path)] = value;
    return;
  }
  set_yaml_value(node[std::string(dotted_path.substr(0, dot))], dotted_path.substr(dot + 1), value);
}

bool has_yaml_value(const YAML::Node& node, std::string_view dotted_path) {
  if (!node.IsMap()) return false;
  const size_t dot = dotted_path.find('.');
  const YAML::Node child = node[std::string(dotted_path.substr(0, dot))];
  if (!child.IsDefined() || child.IsNull()) return false;
  return dot == std::string_view::npos || has_yaml_value(child, dotted_path.substr(dot + 1));
}

std::string absolute(const std::string& path) { return fs::absolute(path).lexically_normal().string(); }

// The user's config, parsed once: its YAML (to write trial configs from), the parsed values (paths
// resolved against the file's directory) and every setting, for the state file.
struct BaseConfig {
  std::string path;
  YAML::Node yaml;
  DistillConfig parsed;
  std::vector<ConfigEntry> entries;
};

// The user's config with `setting` and `sets` applied and every path it gives made absolute, so the
// file runs from wherever it is written (a trial directory, DIR/best.yaml). The keys listed are the
// path-valued ones that train_config.cpp and distill_config.cpp resolve against the file's directory.
std::string config_yaml(const BaseConfig& base, const DistillTrialSetting& setting,
                        const std::vector<std::pair<std::string, std::string>>& sets) {
  YAML::Node root = YAML::Clone(base.yaml);
  const DistillConfig& c = base.parsed;
  const std::pair<const char*, std::string> paths[] = {
      {"model.init", c.train.model_init},    {"model.config", c.train.model_config},
      {"model.tokenizer", c.train.tokenizer}, {"data.train", c.train.train_file},
      {"data.validation", c.train.validation_file}, {"teacher.model", c.teacher_model},
      {"teacher.tokenizer", c.teacher_tokenizer},   {"generate.prompts", c.generate.prompts},
      {"generate.output", c.generate.output}};
  for (const auto& [key, value] : paths)
    if (has_yaml_value(root, key)) set_yaml_value(root, key, absolute(value));
  set_yaml_value(root, "distill.soft.temperature", fmt::format("{}", setting.temperature));
  set_yaml_value(root, "distill.weights.hard", fmt::format("{}", setting.hard_weight));
  set_yaml_value(root, "distill.weights.soft", fmt::format("{}", setting.soft_weight));
  set_yaml_value(root, "optimizer.lr", fmt::format("{}", setting.lr));
  for (const auto& [key, value] : sets) set_yaml_value(root, key, value);
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

BaseConfig load_base_config(const std::string& path) {
  const ConfigFileText file = read_config_file(path, "distillation");
  BaseConfig base{path, parse_config_root(file.text, path), {}, {}};
  base.parsed = parse_distill_config(file.text, path, file.base_dir, &base.entries);
  const TrainConfig& t = base.parsed.train;
  require(!t.validation_file.empty() || t.val_fraction > 0, ErrorKind::InvalidInput,
          "{}: tune distill scores each trial on the validation loss, and this config has no validation data; set "
          "data.validation (a file) or data.val_fraction (a share of data.train, e.g. 0.05)", path);
  require(!t.distributed_enable, ErrorKind::Unsupported,
          "{}: tune distill runs its trials in one process; set distributed.enable: false (tune on one machine, "
          "then run the best config with mpirun)", path);
  return base;
}

DistillSearchSpace resolve_space(DistillSearchSpace space, const BaseConfig& base) {
  if (space.lr.low == 0 && space.lr.high == 0) {
    const double lr = base.parsed.train.adamw.lr;
    space.lr = {lr / std::sqrt(10.0), lr * std::sqrt(10.0)};
  }
  auto check = [](bool ok, const char* flag, const SearchRange& r, const char* rule) {
    require(ok, ErrorKind::InvalidInput, "{} {},{} is not a valid range: give LOW,HIGH with {}", flag, r.low, r.high,
            rule);
  };
  const SearchRange &t = space.temperature, &soft = space.soft_weight, &lr = space.lr;
  check(t.low > 0 && t.low <= t.high, "--temperature", t, "0 < LOW ≤ HIGH");
  check(lr.low > 0 && lr.low <= lr.high, "--lr", lr, "0 < LOW ≤ HIGH");
  check(soft.low >= 0 && soft.low <= soft.high && soft.high <= 1, "--soft-weight", soft, "0 ≤ LOW ≤ HIGH ≤ 1");
  return space;
}

// What makes two runs of the command the same search: the config's settings as parsed (comments and
// layout do not count) and the search's own. --out and --time-limit-s may change between runs.
nlohmann::json search_settings(const BaseConfig& base, const DistillTuneOptions& o, const DistillSearchSpace& space) {
  nlohmann::json settings = nlohmann::json::object();
  for (const ConfigEntry& e : base.entries) settings["config " + e.path] = e.value;
  settings["--trials"] = std::to_string(o.trials);
  settings["--steps"] = std::to_string(o.steps);
  settings["--seed"] = std::to_string(o.seed);
  auto range = [](const SearchRange& r) { return fmt::format("{},{}", r.low, r.high); };
  settings["--temperature"] = range(space.temperature);
  settings["--soft-weight"] = range(space.soft_weight);
  settings["--lr"] = range(space.lr);
  return settings;
}

// Quiets the trial's own step-by-step log (the search's progress lines would drown in it) unless -v
// asked for debug output.
class QuietTrialLog {
 public:
  QuietTrialLog() : level_(spdlog::get_level()) {
    if (level_ > spdlog::level::debug) spdlog::set_level(spdlog::level::warn);
  }
  ~QuietTrialLog() { spdlog::set_level(level_); }

 private:
  spdlog::level::level_enum level_;
};

// Runs and records the trials. Until some trial has reached a finite validation loss, failed and
// diverged runs are held back rather than recorded: if every trial of the first rung fails, the
// config (not a sampled setting) is the likely fault, and the search stops with the first error
// and nothing recorded, so that the corrected config is not refused as a changed search.
struct Search {
  const BaseConfig& base;
  const DistillTuneOptions& options;
  const std::vector<DistillTrialSetting>& settings;
  TuneState& state;
  int64_t runs_planned = 0;
  bool any_worked = false;
  std::vector<TrialRecord> held_failures{};

  std::string trial_dir(int64_t trial) const {
    return absolute((fs::path(options.out_dir) / fmt::format("trial-{:03d}", trial)).string());
  }

  [[noreturn]] void fail_every_trial() const {
    const TrialRecord& first = held_failures.front();
    fail(ErrorKind::InvalidInput, "tune distill: every trial run so far failed, so the search stopped; the first, "
         "trial {} ({}): {}", first.trial, trial_dir(first.trial), first.error);
  }

  double evaluate(int64_t trial, int rung, const Rung& plan, int rungs) {
    if (rung > 0 && !any_worked && !held_failures.empty()) fail_every_trial();  // the whole first rung failed
    const DistillTrialSetting& s = settings[size_t(trial)];
    spdlog::info("tune: rung {}/{} ({} steps), trial {}: T {}, hard {}, soft {}, lr {} [run {} of at most {}]",
                 rung + 1, rungs, plan.steps, trial, s.temperature, s.hard_weight, s.soft_weight, s.lr,
                 state.recorded_count() + int64_t(held_failures.size()) + 1, runs_planned);
    const auto start = Clock::now();
    TrialRecord record{trial, rung, plan.steps, std::nan(""), 0, ""};
    try {
      record.val_loss = run_trial(trial, rung, s, plan);
      if (!std::isfinite(record.val_loss))
        record.error = fmt::format("the validation loss after {} steps is {} (the run diverged)", plan.steps,
                                   record.val_loss);
    } catch (const Error& error) {
      record.error = error.what();  // the trial's own fault (e.g. a learning rate that diverges) or the config's
    }
    record.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (!record.error.empty()) {
      record.val_loss = std::nan("");
      spdlog::warn("tune: trial {} failed at {} steps, ranked last: {}", trial, plan.steps, record.error);
      if (!any_worked) {
        held_failures.push_back(record);
        return record.val_loss;
      }
    } else {
      spdlog::info("tune: trial {} at {} steps: validation loss {:.4f} ({:.1f} s)", trial, plan.steps, record.val_loss,
                   record.seconds);
      any_worked = true;
      for (const TrialRecord& failure : held_failures) state.record(failure);
      held_failures.clear();
    }
    state.record(record);
    return record.val_loss;
  }

  // One real distillation run of the trial to plan.steps. A first-rung run starts afresh: what its
  // directory may hold (a killed run, a search with other settings whose state was deleted) is not
  // known to be this trial's. A later rung continues the previous rung's checkpoint, which an
  // unchanged config.yaml vouches for.
  double run_trial(int64_t trial, int rung, const DistillTrialSetting& s, const Rung& plan) const {
    const std::string dir = trial_dir(trial);
    const std::string config_path = (fs::path(dir) / "config.yaml").string();
    const std::string config_text =
        config_yaml(base, s, {{"steps", std::to_string(options.steps)}, {"checkpointing.dir", dir}});
    if (rung == 0 || !fs::exists(config_path) || read_text_file(config_path) != config_text) fs::remove_all(dir);
    fs::create_directories(dir);
    write_file_atomically(config_path, config_text);
    std::vector<ConfigEntry> entries;
    const DistillConfig config = load_distill_config(config_path, &entries);
    DistillRunOptions run_options;
    run_options.resume = latest_checkpoint(dir).has_value();
    run_options.stop_at_step = plan.steps;
    QuietTrialLog quiet;
    return run_distillation(config, entries, run_options).val_loss;
  }

  std::optional<double> recorded(int64_t trial, int rung, const Rung& plan) {
    const std::optional<TrialRecord> r = state.recorded(trial, rung);
    if (!r) return std::nullopt;
    any_worked = any_worked || std::isfinite(r->val_loss);
    if (r->error.empty())
      spdlog::info("tune: trial {} at {} steps: validation loss {:.4f}, recorded in {} (not run again)", trial,
                   plan.steps, r->val_loss, state.path());
    else
      spdlog::info("tune: trial {} at {} steps: failed, recorded in {} (not run again)", trial, plan.steps,
                   state.path());
    return r->val_loss;
  }
};

}  // namespace

std::vector<DistillTrialSetting> sample_distill_settings(uint64_t seed, int64_t trials, const DistillSearchSpace& space) {
  std::mt19937_64 generator(seed);
  std::vector<DistillTrialSetting> settings;
  for (int64_t t = 0; t < trials; ++t) {
    DistillTrialSetting s;
    s.temperature = four_digits(log_uniform(space.temperature, unit_interval(generator)));
    const SearchRange& soft = space.soft_weight;
    s.soft_weight = four_digits(soft.low + unit_interval(generator) * (soft.high - soft.low));
    s.hard_weight = four_digits(1.0 - s.soft_weight);
    s.lr = four_digits(log_uniform(space.lr, unit_interval(generator)));
    settings.push_back(s);
  }
  return settings;
}

DistillTuneResult tune_distillation(const DistillTuneOptions& options) {
  const auto start = Clock::now();
  require(options.trials >= 1 && options.steps >= 1, ErrorKind::InvalidInput,
          "tune distill needs --trials ≥ 1 and --steps ≥ 1, got {} and {}", options.trials, options.steps);
  require(!options.out_dir.empty(), ErrorKind::InvalidInput, "tune distill needs --out DIR");
  const BaseConfig base = load_base_config(options.config_path);
  const DistillSearchSpace space = resolve_space(options.space, base);
  fs::create_directories(options.out_dir);
  TuneState state(options.out_dir, search_settings(base, options, space));
  state.check_settings();
  const std::vector<DistillTrialSetting> settings = sample_distill_settings(options.seed, options.trials, space);

  const std::vector<Rung> rungs = plan_rungs(options.trials, options.steps);
  Search search{base, options, settings, state};
  for (const Rung& r : rungs) search.runs_planned += r.trials;
  const int rung_count = int(rungs.size());
  HalvingCallbacks callbacks;
  callbacks.recorded = [&](int64_t trial, int rung) { return search.recorded(trial, rung, rungs[size_t(rung)]); };
  callbacks.may_start = [&] {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    return options.time_limit_seconds <= 0 || elapsed < options.time_limit_seconds;
  };
  callbacks.evaluate = [&](int64_t trial, int rung, const Rung& plan) {
    return search.evaluate(trial, rung, plan, rung_count);
  };
  const HalvingResult halving = run_successive_halving(options.trials, options.steps, callbacks);
  if (!search.any_worked && !search.held_failures.empty()) search.fail_every_trial();

  DistillTuneResult result;
  result.complete = halving.complete;
  result.runs_done = state.recorded_count();
  result.runs_planned = search.runs_planned;
  TuneReportInput report{options.config_path, options.out_dir, options.trials, options.steps, options.seed,
                         space, settings, halving, state, -1, -1, ""};
  // The best of the highest rung reached, unless every run there diverged.
  const std::optional<TrialRecord> best = state.recorded(halving.best_trial, halving.best_rung);
  if (best && std::isfinite(best->val_loss)) {
    result.best_trial = report.best_trial = best->trial;
    report.best_rung = best->rung;
    result.best_config_path = report.best_config_path = (fs::path(options.out_dir) / "best.yaml").string();
    const std::string user_run_dir = absolute(base.parsed.train.output_dir);
    write_file_atomically(result.best_config_path,
                          best_config_header(report) + config_yaml(base, settings[size_t(best->trial)],
                                                                   {{"checkpointing.dir", user_run_dir}}));
  }
  result.table_markdown = tune_report_markdown(report);
  write_file_atomically((fs::path(options.out_dir) / "tune.md").string(), result.table_markdown);
  return result;
}

}  // namespace retort::train
