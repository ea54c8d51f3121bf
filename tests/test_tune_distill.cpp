// `retort tune distill`: successive halving on a synthetic loss with a planted best setting (found,
// reproducible from the seed, continued from recorded results), and end to end on the tiny-r1-qwen
// fixture: the state file, table and best.yaml that `retort distill` runs, a rung's continuation
// equal to one uninterrupted run, a killed search continued without redoing finished trial runs,
// and a changed config or seed refused.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include <fmt/format.h>
#include <unistd.h>

#include "test_support.h"
#include "train/distill_tuning.h"
#include "train/successive_halving.h"

namespace retort::test {
namespace {

namespace fs = std::filesystem;
using train::DistillSearchSpace;
using train::DistillTrialSetting;
using train::HalvingCallbacks;
using train::HalvingResult;
using train::Rung;

TEST(SuccessiveHalving, PlansRungsThatHalveTrialsAndDoubleSteps) {
  auto plan = [](int64_t trials, int64_t steps) {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const Rung& r : train::plan_rungs(trials, steps)) out.emplace_back(r.trials, r.steps);
    return out;
  };
  using P = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(plan(8, 16), (P{{8, 4}, {4, 8}, {2, 16}}));
  EXPECT_EQ(plan(4, 4), (P{{4, 2}, {2, 4}}));
  EXPECT_EQ(plan(5, 3), (P{{5, 1}, {3, 2}, {2, 3}}));
  EXPECT_EQ(plan(2, 10), (P{{2, 10}}));
  EXPECT_EQ(plan(1, 7), (P{{1, 7}}));
}

TEST(SuccessiveHalving, SampledSettingsStayInTheirRangesAndFollowTheSeed) {
  const DistillSearchSpace space{{1, 8}, {0.1, 0.9}, {1e-4, 1e-3}};
  const auto a = train::sample_distill_settings(11, 64, space);
  ASSERT_EQ(a.size(), 64u);
  for (const DistillTrialSetting& s : a) {
    EXPECT_GE(s.temperature, 1.0);
    EXPECT_LE(s.temperature, 8.0);
    EXPECT_GE(s.soft_weight, 0.1);
    EXPECT_LE(s.soft_weight, 0.9);
    EXPECT_NEAR(s.hard_weight + s.soft_weight, 1.0, 1e-12);
    EXPECT_GE(s.lr, 1e-4 * (1 - 1e-4));
    EXPECT_LE(s.lr, 1e-3 * (1 + 1e-4));
    EXPECT_EQ(s.temperature, std::stod(fmt::format("{:.4g}", s.temperature))) << "rounded to 4 digits";
  }
  const auto again = train::sample_distill_settings(11, 64, space);
  const auto other = train::sample_distill_settings(12, 64, space);
  EXPECT_EQ(a[5].lr, again[5].lr);
  EXPECT_EQ(a[63].temperature, again[63].temperature);
  EXPECT_NE(a[5].lr, other[5].lr);
}

// A stand-in for training: the loss is the distance (in log T, soft weight and log lr) from a
// planted best setting, plus a trial-dependent error that shrinks as the trial trains longer.
struct PlantedSearch {
  std::vector<DistillTrialSetting> settings;
  std::map<std::pair<int64_t, int>, double> recorded{};
  std::vector<std::pair<int64_t, int64_t>> evaluated{};  // (trial, steps)
  int64_t budget = 1 << 30;                            // evaluations allowed before "the time limit"

  double distance(const DistillTrialSetting& s) const {
    return std::hypot(std::log(s.temperature / 3.0), s.soft_weight - 0.7, std::log(s.lr / 3e-4));
  }
  HalvingResult run(int64_t max_steps) {
    HalvingCallbacks c;
    c.recorded = [&](int64_t t, int rung) -> std::optional<double> {
      auto it = recorded.find({t, rung});
      return it == recorded.end() ? std::nullopt : std::optional<double>(it->second);
    };
    c.may_start = [&] { return int64_t(evaluated.size()) < budget; };
    c.evaluate = [&](int64_t t, int rung, const Rung& plan) {
      evaluated.emplace_back(t, plan.steps);
      const double loss = distance(settings[size_t(t)]) + 0.02 * double((t * 7) % 5) / double(plan.steps);
      recorded[{t, rung}] = loss;
      return loss;
    };
    return train::run_successive_halving(int64_t(settings.size()), max_steps, c);
  }
  int64_t closest() const {
    int64_t best = 0;
    for (size_t t = 1; t < settings.size(); ++t)
      if (distance(settings[t]) < distance(settings[size_t(best)])) best = int64_t(t);
    return best;
  }
};

TEST(SuccessiveHalving, FindsThePlantedBestReproducibly) {
  const DistillSearchSpace space{{1, 8}, {0.1, 0.9}, {1e-4, 1e-3}};
  PlantedSearch search{train::sample_distill_settings(2024, 32, space)};
  const HalvingResult result = search.run(16);
  ASSERT_TRUE(result.complete);
  EXPECT_EQ(result.best_trial, search.closest());
  const DistillTrialSetting& best = search.settings[size_t(result.best_trial)];
  EXPECT_LT(search.distance(best), 0.5) << "32 trials land near T 3, soft 0.7, lr 3e-4: T " << best.temperature
                                        << ", soft " << best.soft_weight << ", lr " << best.lr;
  // 32 trials at 2 steps, 16 at 4, 8 at 8, 4 at 16... until two: every trial ran exactly once per rung.
  EXPECT_EQ(search.evaluated.size(), 32u + 16 + 8 + 4 + 2);
  EXPECT_EQ(search.evaluated.back().second, 16);

  PlantedSearch again{train::sample_distill_settings(2024, 32, space)};
  EXPECT_EQ(again.run(16).best_trial, result.best_trial);
  EXPECT_EQ(again.evaluated, search.evaluated) << "the same seed trains the same trials in the same order";
}

TEST(SuccessiveHalving, AStoppedSearchContinuesFromItsRecordAndEndsTheSame) {
  const DistillSearchSpace space{{1, 8}, {0.1, 0.9}, {1e-4, 1e-3}};
  PlantedSearch whole{train::sample_distill_settings(5, 12, space)};
  const HalvingResult uninterrupted = whole.run(8);

  PlantedSearch stopped{whole.settings};
  stopped.budget = 7;  // inside the first rung of 12
  const HalvingResult first = stopped.run(8);
  EXPECT_FALSE(first.complete);
  EXPECT_EQ(stopped.evaluated.size(), 7u);
  stopped.budget = 1 << 30;
  stopped.evaluated.clear();
  const HalvingResult second = stopped.run(8);
  ASSERT_TRUE(second.complete);
  EXPECT_EQ(second.best_trial, uninterrupted.best_trial);
  EXPECT_EQ(stopped.evaluated.size() + 7, whole.evaluated.size()) << "the recorded runs were not trained again";
}

TEST(SuccessiveHalving, ADivergedTrialRanksLast) {
  HalvingCallbacks c;
  c.recorded = [](int64_t, int) { return std::nullopt; };
  c.may_start = [] { return true; };
  c.evaluate = [](int64_t t, int, const Rung&) { return t == 0 ? std::nan("") : double(t); };
  const HalvingResult result = train::run_successive_halving(4, 4, c);
  EXPECT_EQ(result.best_trial, 1);
}

// ---- end to end on the tiny fixture ----

struct TuneCliTest : ::testing::Test {
  void SetUp() override {
    teacher = shared_path("fixtures/tiny-r1-qwen");
    shakespeare = shared_path("data/tinyshakespeare/input.txt");
    dir = fs::temp_directory_path() / ("retort-tune-cli-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    if (teacher.empty() || shakespeare.empty()) return;
    std::ifstream in(shakespeare);
    std::string text(12000, '\0');
    in.read(text.data(), std::streamsize(text.size()));
    std::ofstream(dir / "text.txt") << text;  // a small slice: tokenized once per trial
  }
  void TearDown() override { fs::remove_all(dir); }

  std::string write_config(const std::string& extra = "") {
    const std::string path = (dir / "distill.yaml").string();
    std::ofstream(path) << "teacher: {model: " << teacher << "}\n"
                        << "student: {from_teacher: true, every: 2, intermediate_size: 128}\n"
                        << "data: {train: text.txt, format: text, val_fraction: 0.1}\n"
                        << "batch_size: 2\nseq_len: 16\nsteps: 3\nthreads: 1\nlog_every: 100\n"
                        << "optimizer: {lr: 0.001}\nevaluation: {batches: 2}\n"
                        << "checkpointing: {dir: final-run}\n" << extra;
    return path;
  }
  std::string tune_command(const std::string& config, const std::string& flags = "") const {
    return retort_binary() + " tune distill " + config + " --trials 4 --steps 4 --seed 7 --out " +
           (dir / "tune").string() + " " + flags;
  }
  nlohmann::json state() const {
    std::ifstream in(dir / "tune" / "tune-state.json");
    return nlohmann::json::parse(in);
  }

  std::string teacher, shakespeare;
  fs::path dir;
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST_F(TuneCliTest, WritesStateTableAndABestConfigThatDistillRuns) {
  RETORT_REQUIRE_PATH(teacher, "the tiny-r1-qwen fixture");
  RETORT_REQUIRE_PATH(shakespeare, "Tiny Shakespeare (../shared/data/tinyshakespeare)");
  const std::string config = write_config();
  const CommandResult r = run_command(tune_command(config) + " 2>" + (dir / "stderr.txt").string());
  const std::string log = read_text(dir / "stderr.txt");
  ASSERT_EQ(r.status, 0) << r.output << log;
  EXPECT_NE(r.output.find("| trial | T | hard | soft | lr | steps | val loss | rung |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(best)"), std::string::npos) << r.output;
  EXPECT_NE(log.find("tune: rung 2/2 (4 steps)"), std::string::npos) << log;
  EXPECT_EQ(read_text(dir / "tune" / "tune.md"), r.output.substr(1));

  const nlohmann::json s = state();
  ASSERT_EQ(s["results"].size(), 6u) << "4 trials at 2 steps, then the better 2 at 4";
  int64_t best = -1;
  double best_loss = 1e9;
  for (const auto& result : s["results"]) {
    EXPECT_TRUE(result["val_loss"].is_number()) << result.dump();
    if (result["rung"] == 1 && result["val_loss"].get<double>() < best_loss)
      best = result["trial"], best_loss = result["val_loss"];
  }
  ASSERT_GE(best, 0);
  EXPECT_NE(r.output.find("| " + std::to_string(best) + " (best) |"), std::string::npos) << r.output;

  // The winner trained 2 steps, stopped, then continued to 4 on the 4-step schedule: the same
  // weights as one uninterrupted 4-step run of its config.
  const fs::path trial = dir / "tune" / fmt::format("trial-{:03d}", best);
  std::string trial_config = read_text(trial / "config.yaml");
  EXPECT_NE(trial_config.find("steps: 4"), std::string::npos) << trial_config;
  const size_t at = trial_config.find(trial.string());
  ASSERT_NE(at, std::string::npos) << trial_config;
  trial_config.replace(at, trial.string().size(), (dir / "straight").string());
  std::ofstream(dir / "straight.yaml") << trial_config;
  const CommandResult straight = run_command(retort_binary() + " distill " + (dir / "straight.yaml").string() + " 2>&1");
  ASSERT_EQ(straight.status, 0) << straight.output;
  ASSERT_TRUE(fs::exists(trial / "step-00000002" / "model.safetensors")) << "the winner stopped at rung 1's steps";
  ASSERT_TRUE(fs::exists(dir / "straight" / "step-00000004" / "model.safetensors"));
  EXPECT_EQ(read_text(trial / "step-00000004" / "model.safetensors"),
            read_text(dir / "straight" / "step-00000004" / "model.safetensors"));

  // best.yaml: the user's config (3 steps, its own checkpoint dir) with the winner's settings.
  const std::string best_yaml = read_text(dir / "tune" / "best.yaml");
  EXPECT_NE(best_yaml.find("trial " + std::to_string(best)), std::string::npos) << best_yaml;
  const CommandResult run = run_command(retort_binary() + " distill " + (dir / "tune" / "best.yaml").string() + " 2>&1");
  ASSERT_EQ(run.status, 0) << run.output;
  EXPECT_TRUE(fs::exists(dir / "final-run" / "step-00000003" / "model.safetensors"));
}

TEST_F(TuneCliTest, AKilledSearchContinuesWithoutRedoingFinishedRuns) {
  RETORT_REQUIRE_PATH(teacher, "the tiny-r1-qwen fixture");
  RETORT_REQUIRE_PATH(shakespeare, "Tiny Shakespeare (../shared/data/tinyshakespeare)");
  const std::string config = write_config();
  const fs::path state_path = dir / "tune" / "tune-state.json";
  std::vector<std::string> args{"tune", "distill", config, "--trials", "4", "--steps", "4", "--seed", "7",
                                "--out", (dir / "tune").string()};
  ASSERT_TRUE(kill_retort_when(args, [&] {
    return fs::exists(state_path) && read_text(state_path).find("\"val_loss\"") != std::string::npos;
  })) << "the search ended before it could be killed";
  const nlohmann::json before = state();
  const size_t done = before["results"].size();
  ASSERT_GE(done, 1u);
  ASSERT_LT(done, 6u);

  const CommandResult r = run_command(tune_command(config) + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json after = state();
  ASSERT_EQ(after["results"].size(), 6u) << r.output;
  for (size_t i = 0; i < done; ++i) EXPECT_EQ(after["results"][i], before["results"][i]) << "kept as recorded";
  EXPECT_NE(r.output.find("(not run again)"), std::string::npos) << r.output;
  size_t started = 0;
  for (size_t at = r.output.find("tune: rung "); at != std::string::npos; at = r.output.find("tune: rung ", at + 1))
    ++started;
  EXPECT_EQ(started, 6 - done) << r.output;
  EXPECT_TRUE(fs::exists(dir / "tune" / "best.yaml"));

  // A search that may start nothing reports that and says how to go on.
  const CommandResult none = run_command(retort_binary() + " tune distill " + config + " --trials 4 --steps 4 --out " +
                                         (dir / "fresh").string() + " --time-limit-s 0.000001 2>&1");
  EXPECT_EQ(none.status, 1) << none.output;
  EXPECT_NE(none.output.find("after 0 of 6 trial runs"), std::string::npos) << none.output;
  EXPECT_NE(none.output.find("No trial run finished"), std::string::npos) << none.output;
}

TEST_F(TuneCliTest, ASearchWhoseEveryTrialFailsStopsWithTheFirstErrorAndRecordsNothing) {
  RETORT_REQUIRE_PATH(teacher, "the tiny-r1-qwen fixture");
  RETORT_REQUIRE_PATH(shakespeare, "Tiny Shakespeare (../shared/data/tinyshakespeare)");
  const std::string config = write_config();
  // Learning rates this large make every trial's loss non-finite within its first steps.
  const CommandResult r = run_command(tune_command(config, "--lr 1e5,1e6") + " 2>&1");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("every trial run so far failed, so the search stopped; the first, trial 0"),
            std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("tune: rung 2/2"), std::string::npos) << "no second rung of failed trials: " << r.output;
  EXPECT_FALSE(fs::exists(dir / "tune" / "best.yaml"));
  if (fs::exists(dir / "tune" / "tune-state.json")) {
    EXPECT_TRUE(state()["results"].empty());
  }
  // The corrected search (other flags) is not refused as a changed one: nothing was recorded.
  const CommandResult fixed = run_command(tune_command(config) + " 2>&1");
  EXPECT_EQ(fixed.status, 0) << fixed.output;
}

TEST_F(TuneCliTest, AChangedConfigOrSeedIsRefused) {
  RETORT_REQUIRE_PATH(teacher, "the tiny-r1-qwen fixture");
  RETORT_REQUIRE_PATH(shakespeare, "Tiny Shakespeare (../shared/data/tinyshakespeare)");
  const std::string config = write_config();
  const fs::path state_path = dir / "tune" / "tune-state.json";
  std::vector<std::string> args{"tune", "distill", config, "--trials", "4", "--steps", "4", "--seed", "7",
                                "--out", (dir / "tune").string()};
  ASSERT_TRUE(kill_retort_when(args, [&] {
    return fs::exists(state_path) && read_text(state_path).find("\"val_loss\"") != std::string::npos;
  })) << "the search ended before it could be killed";
  const std::string recorded = read_text(state_path);

  write_config("seed: 3\n");
  CommandResult r = run_command(tune_command(config) + " 2>&1");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("other settings: config seed was \"0\", now \"3\""), std::string::npos) << r.output;
  write_config();
  r = run_command(retort_binary() + " tune distill " + config + " --trials 4 --steps 4 --seed 8 --out " +
                  (dir / "tune").string() + " 2>&1");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("--seed was \"7\", now \"8\""), std::string::npos) << r.output;
  EXPECT_EQ(read_text(state_path), recorded) << "a refused run leaves the state alone";
}

}  // namespace
}  // namespace retort::test
