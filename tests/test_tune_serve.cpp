// `retort tune serve`: the coordinate search on a planted measurement (finds the fastest setting
// that meets the p99 target and rejects faster ones that miss it, is reproducible, respects
// --max-trials and the time limit, never picks a trial with errors), the child process that runs
// each trial's server (stopped, killed when it ignores SIGTERM), the command's refusals, and end
// to end on the tiny-r1-qwen fixture: two real trials, the table and a best-serve.yaml that
// `retort serve --config` runs; a target nothing meets (exit 1, the table, no YAML); a server
// that cannot start; a Ctrl-C that leaves no server behind.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "eval/serve_tuning.h"
#include "server/serve_tuning_run.h"
#include "test_support.h"
#include "util/child_process.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

ServeSearchSpace planted_space() { return {{1, 2}, {1, 4, 8, 16}, {256, 512, 1024}, {"f16", "f32"}}; }

// Throughput grows with the parallel slots and so does the tail latency: with a 1000 ms target,
// parallel 4 is the most that meets it, and parallel 8 and 16 are faster but miss. One thread,
// 1024 batch tokens and f32 KV each add a little, so the planted best differs from the starting
// setting (threads 2, parallel 8, batch 512, f16) in every dimension.
ServeMeasurement planted_measurement(const ServeSetting& s) {
  ServeMeasurement m;
  m.output_tokens_per_second = 10.0 * s.parallel + (s.threads == 1 ? 5 : 0) +
                               (s.batch_tokens == 1024 ? 3 : s.batch_tokens == 512 ? 1 : 0) +
                               (s.kv_type == "f32" ? 2 : 0);
  m.end_to_end_p99_ms = 250.0 * s.parallel;
  m.succeeded = 32;
  return m;
}
const ServeSetting kPlantedBest{1, 4, 1024, "f32"};

ServeSearchCallbacks planted_callbacks(std::vector<ServeSetting>* measured = nullptr) {
  ServeSearchCallbacks callbacks;
  callbacks.measure = [measured](const ServeSetting& setting, int64_t) {
    if (measured) measured->push_back(setting);
    return planted_measurement(setting);
  };
  return callbacks;
}

TEST(TuneServeSearch, FindsThePlantedBestThatMeetsTheTargetAndRejectsFasterOnesThatMissIt) {
  const ServeSearchResult result = search_serve_settings(planted_space(), 1000, 100, planted_callbacks());
  ASSERT_GE(result.best, 0);
  const ServeTrial& best = result.trials[static_cast<size_t>(result.best)];
  EXPECT_EQ(best.setting, kPlantedBest) << describe_setting(best.setting);
  EXPECT_TRUE(best.meets_target);
  EXPECT_EQ(result.stop, SearchStop::Converged);
  bool faster_rejected = false;
  for (const ServeTrial& trial : result.trials) {
    EXPECT_EQ(trial.meets_target, trial.setting.parallel <= 4) << describe_setting(trial.setting);
    if (trial.measurement.output_tokens_per_second > best.measurement.output_tokens_per_second) {
      EXPECT_FALSE(trial.meets_target) << "a faster setting that meets the target was passed over";
      faster_rejected = true;
    }
  }
  EXPECT_TRUE(faster_rejected) << "the search never measured a faster setting that misses the target";
  EXPECT_LT(result.trials.size(), 2u * 4 * 3 * 2) << "fewer trials than the grid";
  for (size_t i = 0; i < result.trials.size(); ++i) {
    EXPECT_EQ(result.trials[i].number, static_cast<int64_t>(i) + 1);
    for (size_t j = 0; j < i; ++j) EXPECT_FALSE(result.trials[i].setting == result.trials[j].setting) << "measured twice";
  }
}

TEST(TuneServeSearch, IsReproducible) {
  std::vector<ServeSetting> first, second;
  search_serve_settings(planted_space(), 1000, 100, planted_callbacks(&first));
  search_serve_settings(planted_space(), 1000, 100, planted_callbacks(&second));
  EXPECT_EQ(first, second);
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first.front(), (ServeSetting{2, 8, 512, "f16"})) << "starts from the middle, with the most threads";
}

TEST(TuneServeSearch, StopsAtMaxTrials) {
  const ServeSearchResult result = search_serve_settings(planted_space(), 1000, 5, planted_callbacks());
  EXPECT_EQ(result.trials.size(), 5u);
  EXPECT_EQ(result.stop, SearchStop::MaxTrials);
  ASSERT_GE(result.best, 0) << "parallel 1 and 4 met the target within the first five trials";
  EXPECT_EQ(result.trials[static_cast<size_t>(result.best)].setting.parallel, 4);
}

TEST(TuneServeSearch, StopsWhenTheTimeLimitSaysSo) {
  ServeSearchCallbacks callbacks = planted_callbacks();
  int asked = 0;
  callbacks.may_start = [&] { return ++asked <= 3; };
  int reported = 0;
  callbacks.trial_done = [&](const ServeTrial& trial, const ServeSearchResult& so_far) {
    ++reported;
    EXPECT_EQ(so_far.trials.back().number, trial.number);
  };
  const ServeSearchResult result = search_serve_settings(planted_space(), 1000, 100, callbacks);
  EXPECT_EQ(result.trials.size(), 3u);
  EXPECT_EQ(reported, 3);
  EXPECT_EQ(result.stop, SearchStop::TimeLimit);
}

TEST(TuneServeSearch, NeverPicksATrialWithErrorsOrNoneWhenNothingMeetsTheTarget) {
  ServeSearchCallbacks callbacks = planted_callbacks();
  callbacks.measure = [](const ServeSetting& setting, int64_t) {
    ServeMeasurement m = planted_measurement(setting);
    if (setting.kv_type == "f32") {  // fast, but its server failed some requests
      m.output_tokens_per_second += 100;
      m.failed = 1;
      m.error = "1 requests failed, e.g. HTTP 500";
    }
    return m;
  };
  const ServeSearchResult result = search_serve_settings(planted_space(), 1000, 100, callbacks);
  ASSERT_GE(result.best, 0);
  EXPECT_EQ(result.trials[static_cast<size_t>(result.best)].setting, (ServeSetting{1, 4, 1024, "f16"}));

  const ServeSearchResult none = search_serve_settings(planted_space(), 10, 100, planted_callbacks());
  EXPECT_EQ(none.best, -1);
  const std::string markdown =
      serve_tuning_markdown({"m", 16, 64, 64, 10, 100, 0}, none, SearchPhase::Finished);
  EXPECT_NE(markdown.find("No setting met"), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("nearest was trial"), std::string::npos) << markdown;
}

TEST(TuneServeSearch, RefusesABadTargetOrAnEmptyDimension) {
  EXPECT_THROW(search_serve_settings(planted_space(), 0, 10, planted_callbacks()), Error);
  EXPECT_THROW(search_serve_settings(planted_space(), -5, 10, planted_callbacks()), Error);
  ServeSearchSpace empty = planted_space();
  empty.kv_types.clear();
  EXPECT_THROW(search_serve_settings(empty, 1000, 10, planted_callbacks()), Error);
}

TEST(TuneServeSearch, DefaultSpaceFitsTheMachineAndTheClients) {
  const ServeSearchSpace two_cores = default_serve_search_space(2, 16);
  EXPECT_EQ(two_cores.threads, (std::vector<int>{1, 2}));
  EXPECT_EQ(two_cores.parallel, (std::vector<int>{1, 4, 8, 16}));
  EXPECT_EQ(two_cores.batch_tokens, (std::vector<int64_t>{256, 512, 1024}));
  EXPECT_EQ(two_cores.kv_types, (std::vector<std::string>{"f16", "q8", "f32"}));
  const ServeSearchSpace wide = default_serve_search_space(12, 6);
  EXPECT_EQ(wide.threads, (std::vector<int>{1, 2, 4, 8, 12}));
  EXPECT_EQ(wide.parallel, (std::vector<int>{1, 4, 6}));
  const ServeSearchSpace single = default_serve_search_space(1, 1);
  EXPECT_EQ(single.threads, (std::vector<int>{1}));
  EXPECT_EQ(single.parallel, (std::vector<int>{1}));
}

TEST(TuneServeReport, TableMarksTheBestAndTheYamlUsesServeKeys) {
  const ServeSearchResult result = search_serve_settings(planted_space(), 1000, 100, planted_callbacks());
  const ServeTuningDescription description{"model.gguf", 16, 64, 64, 1000, 100, 0};
  const std::string markdown = serve_tuning_markdown(description, result, SearchPhase::Finished);
  EXPECT_NE(markdown.find("**yes, best**"), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("e2e p99 ms"), std::string::npos);
  EXPECT_NE(markdown.find("converged"), std::string::npos);
  size_t rows = 0;
  for (size_t at = markdown.find("\n| "); at != std::string::npos; at = markdown.find("\n| ", at + 1)) ++rows;
  EXPECT_EQ(rows, result.trials.size() + 1) << "a header and a row per trial";

  server::TuneServeOptions options;
  options.model_path = "/models/a b.gguf";
  options.fixed_flags = {{"template", "deepseek-r1"}};
  const std::string yaml = server::best_serve_yaml(options, kPlantedBest, "summary");
  EXPECT_NE(yaml.find("model: \"/models/a b.gguf\"\n"), std::string::npos) << yaml;
  for (const char* line : {"template: \"deepseek-r1\"\n", "threads: \"1\"\n", "parallel: \"4\"\n",
                           "batch-tokens: \"1024\"\n", "kv-type: \"f32\"\n"})
    EXPECT_NE(yaml.find(line), std::string::npos) << line << " in\n" << yaml;
}

bool process_exists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

TEST(ChildProcess, StopsAChildAndKillsOneThatIgnoresSigterm) {
  const fs::path dir = fs::temp_directory_path() / ("retort-child-" + std::to_string(getpid()));
  fs::create_directories(dir);
  {
    ChildProcess sleeper({"/bin/sleep", "30"}, (dir / "sleep.log").string());
    const pid_t pid = sleeper.pid();
    EXPECT_FALSE(sleeper.exited().has_value());
    EXPECT_EQ(sleeper.stop(std::chrono::seconds(5)), "killed by signal 15 (Terminated)");
    EXPECT_FALSE(process_exists(pid));
  }
  {
    ChildProcess stubborn({"/bin/sh", "-c", "trap '' TERM; echo armed; exec sleep 30"}, (dir / "stubborn.log").string());
    const auto armed = Clock::now() + std::chrono::seconds(10);
    while (read_text_file((dir / "stubborn.log").string()).find("armed") == std::string::npos && Clock::now() < armed)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const auto started = Clock::now();
    EXPECT_EQ(stubborn.stop(std::chrono::milliseconds(300)), "killed by signal 9 (Killed)");
    EXPECT_LT(Clock::now() - started, std::chrono::seconds(5));
  }
  EXPECT_THROW(ChildProcess({(dir / "no-such-program").string()}, (dir / "none.log").string()), Error);
  fs::remove_all(dir);
}

std::string tune_serve_command(const std::string& arguments) { return retort_binary() + " tune serve " + arguments; }

TEST(TuneServeCli, RefusesBadInput) {
  const std::string fixture = shared_path("fixtures/tiny-r1-qwen");
  const std::string model = fixture.empty() ? "/" : fixture;  // any existing path passes the model check
  struct Case {
    std::string arguments, expected;
  };
  const std::vector<Case> cases = {
      {model + " --target-p99-ms=0", "--target-p99-ms must be a latency above 0 ms"},
      {model + " --target-p99-ms=-5", "--target-p99-ms must be a latency above 0 ms"},
      {"/no/such/model --target-p99-ms 2000", "model path '/no/such/model' does not exist"},
      {model + " --target-p99-ms 2000 --no-such-flag", "--no-such-flag"},
      {model + " --target-p99-ms 2000 --kv-type q4", "is not a KV cache type"},
      {"--target-p99-ms 2000", "model is required"},
      {model, "--target-p99-ms is required"},
  };
  for (const Case& c : cases) {
    const CommandResult r = run_command(tune_serve_command(c.arguments) + " --out /tmp/retort-unused 2>&1");
    EXPECT_NE(r.status, 0) << c.arguments;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.arguments << ":\n" << r.output;
  }
}

class TuneServeEndToEnd : public testing::Test {
 protected:
  void SetUp() override {
    fixture_ = shared_path("fixtures/tiny-r1-qwen");
    dir_ = fs::temp_directory_path() / ("retort-tune-serve-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string fixture_;
  fs::path dir_;
};

TEST_F(TuneServeEndToEnd, TwoTrialsOnTheTinyModelWriteTheTableAndAYamlThatServes) {
  RETORT_REQUIRE_PATH(fixture_, "fixtures/tiny-r1-qwen");
  const fs::path out = dir_ / "tune";
  const CommandResult r = run_command(tune_serve_command(
      fixture_ + " --target-p99-ms 60000 --clients 2 --requests 4 --max-tokens 8 --threads 1 --parallel 1,2 "
      "--batch-tokens 64,128 --kv-type f16 --template deepseek-r1 --ctx 256 --max-trials 2 --time-limit-s 120 --out " +
      out.string() + " 2>" + (dir_ / "stderr.txt").string()));
  const std::string progress = read_text_file((dir_ / "stderr.txt").string());
  ASSERT_EQ(r.status, 0) << r.output << progress;
  EXPECT_NE(progress.find("tune serve: trial 1 (at most 2): starting the server"), std::string::npos) << progress;
  EXPECT_NE(progress.find("tune serve: trial 2: "), std::string::npos) << progress;
  EXPECT_NE(r.output.find("| trial | threads | parallel |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("**Best:**"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--max-trials (2) stopped the search"), std::string::npos) << r.output;
  EXPECT_EQ(read_text_file((out / "tune.md").string()), r.output.substr(1));
  ASSERT_TRUE(fs::exists(out / "best-serve.yaml"));
  EXPECT_TRUE(fs::exists(out / "trial-01-serve.log"));
  EXPECT_TRUE(fs::exists(out / "trial-02-serve.log"));
  EXPECT_FALSE(fs::exists(out / "trial-03-serve.log"));

  // The YAML runs as it is: `retort serve --config` reaches "ready" with the tuned setting.
  const std::string log = (dir_ / "serve.log").string();
  ChildProcess served({retort_binary(), "serve", "--config", (out / "best-serve.yaml").string(), "--port", "0"}, log);
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  while (read_text_file(log).find("ready on http://") == std::string::npos && !served.exited() &&
         Clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::string served_log = read_text_file(log);
  EXPECT_NE(served_log.find("ready on http://"), std::string::npos) << served_log;
  EXPECT_NE(served_log.find("template deepseek-r1"), std::string::npos) << served_log;
  EXPECT_EQ(served.stop(std::chrono::seconds(10)), "exited with status 0") << read_text_file(log);
}

TEST_F(TuneServeEndToEnd, NoSettingMeetingTheTargetIsANonZeroExitWithTheTableAndNoYaml) {
  RETORT_REQUIRE_PATH(fixture_, "fixtures/tiny-r1-qwen");
  const fs::path out = dir_ / "tune";
  fs::create_directories(out);
  std::ofstream(out / "best-serve.yaml") << "model: from-an-earlier-search\n";
  const CommandResult r = run_command(tune_serve_command(
      fixture_ + " --target-p99-ms 0.001 --clients 1 --requests 2 --max-tokens 4 --threads 1 --parallel 1 "
      "--batch-tokens 64 --kv-type f16 --template deepseek-r1 --ctx 256 --max-trials 1 --out " + out.string() +
      " 2>" + (dir_ / "stderr.txt").string()));
  const std::string errors = read_text_file((dir_ / "stderr.txt").string());
  EXPECT_EQ(r.status, 1) << r.output << errors;
  EXPECT_NE(errors.find("error: no setting met end-to-end p99 <= 0.001 ms"), std::string::npos) << errors;
  EXPECT_NE(read_text_file((out / "tune.md").string()).find("**No setting met**"), std::string::npos);
  EXPECT_FALSE(fs::exists(out / "best-serve.yaml")) << "an earlier search's winner must not pass for this one's";
}

TEST_F(TuneServeEndToEnd, AFirstServerThatCannotStartStopsTheSearchWithItsReason) {
  RETORT_REQUIRE_PATH(fixture_, "fixtures/tiny-r1-qwen");
  const CommandResult r = run_command(tune_serve_command(
      fixture_ + " --target-p99-ms 1000 --threads 1 --template no-such-template --out " + (dir_ / "tune").string() +
      " 2>&1"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("the first trial's server did not start"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no-such-template"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("trial 2"), std::string::npos) << "no second server after the first failed to start";
}

// The pids whose parent is `parent`, from /proc.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line) || line.rfind(')') == std::string::npos) continue;
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string state;
    pid_t ppid = 0;
    fields >> state >> ppid;
    if (ppid == parent) children.push_back(std::stoi(name));
  }
  return children;
}

TEST_F(TuneServeEndToEnd, CtrlCStopsTheTrialsServer) {
  RETORT_REQUIRE_PATH(fixture_, "fixtures/tiny-r1-qwen");
  const fs::path out = dir_ / "tune";
  ChildProcess tune({retort_binary(), "tune", "serve", fixture_, "--target-p99-ms", "60000", "--clients", "2",
                     "--requests", "100000", "--max-tokens", "64", "--threads", "1", "--template", "deepseek-r1",
                     "--ctx", "256", "--out", out.string()},
                    (dir_ / "tune.log").string());
  const std::string server_log = (out / "trial-01-serve.log").string();
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  while ((!fs::exists(server_log) || read_text_file(server_log).find("ready on") == std::string::npos) &&
         !tune.exited() && Clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::vector<pid_t> servers = children_of(tune.pid());
  ASSERT_EQ(servers.size(), 1u) << read_text_file((dir_ / "tune.log").string());
  kill(tune.pid(), SIGINT);
  const auto stopped_by = Clock::now() + std::chrono::seconds(10);
  while (!tune.exited() && Clock::now() < stopped_by) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(tune.stop(std::chrono::seconds(1)), "killed by signal 2 (Interrupt)");
  EXPECT_FALSE(process_exists(servers[0])) << "the trial's server outlived retort tune serve";
}

}  // namespace
}  // namespace retort::test
