// Data-parallel `retort train` and `retort distill` under real `mpirun` of the built binary: 2 and 4
// ranks with batch b and accumulation k against one process with batch N·b and the same k (the same
// global batch), flat and hierarchical (4 ranks as 2 simulated nodes of 2); and the bad starts:
// device_num ≠ world size, ranks with different configs, a rank SIGKILLed mid-run.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "dist/communicator.h"
#include "io/safetensors.h"
#include "test_support.h"
#include "util/mapped_file.h"
#include "util/log.h"

namespace retort::train {
namespace {

namespace fs = std::filesystem;
using test::CommandResult;
using test::run_command;

constexpr int kSteps = 3;

class TrainMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!dist::mpi_compiled_in()) {
      if (test::running_in_ci()) FAIL() << "MPI is not compiled in under CI: " << dist::mpi_why_not();
      GTEST_SKIP() << "MPI not compiled in: " << dist::mpi_why_not();
    }
    model_ = test::shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(model_, "fixture tiny-r1-qwen");
    dir_ = fs::temp_directory_path() /
           fmt::format("retort-mpi-{}-{}", getpid(), ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::mt19937 rng(11);
    std::ofstream data(dir_ / "ids.txt");
    for (int line = 0; line < 48; ++line) {
      for (int t = 0; t < 16 + line % 11; ++t) data << (rng() % 500) << ' ';
      data << '\n';
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  // How a run is set up: batch_size, ranks (> 1 adds the distributed section), allreduce, steps,
  // zero (the ZeRO stage), save_every (checkpointing.every), reproducible (distributed.reproducible,
  // any ranks) and bucket_mb (distributed.bucket_mb).
  struct RunSettings {
    int batch = 1;
    int ranks = 1;
    std::string allreduce = "flat";
    int64_t steps = kSteps;
    int zero = 0;
    int save_every = 0;
    bool reproducible = false;
    double bucket_mb = 25;  // the default: buckets during the backward
  };
  // command: "train" or "distill".
  std::string write_config(const std::string& command, const std::string& run, const RunSettings& s) const {
    std::string head = command == "train"
                           ? fmt::format("model: {{init: {}}}\n", model_)
                           : fmt::format("teacher: {{model: {}}}\n"
                                         "student: {{from_teacher: true, layers: [0, 2], intermediate_size: 128}}\n"
                                         "distill:\n"
                                         "  weights: {{hard: 0.5, soft: 0.5, hidden: 0.2, attention: 0.2}}\n"
                                         "  soft: {{temperature: 2.0}}\n"
                                         "  hidden: {{loss: mse, layer_map: [[1, 1], [2, 3]]}}\n"
                                         "  attention: {{loss: kl, layer_map: [[0, 0], [1, 2]]}}\n",
                                         model_);
    const std::string distributed =
        s.ranks > 1 ? fmt::format("distributed: {{enable: true, strategy: collective, device_num: {}, allreduce: {}, "
                                  "zero: {}, reproducible: {}, bucket_mb: {}}}\n",
                                  s.ranks, s.allreduce, s.zero, s.reproducible, s.bucket_mb)
                    : fmt::format("distributed: {{reproducible: {}}}\n", s.reproducible);
    const fs::path path = dir_ / (run + ".yaml");
    std::ofstream(path) << head
                        << fmt::format(
                               "data: {{train: ids.txt, format: tokens, val_fraction: 0.1}}\n"
                               "batch_size: {}\nseq_len: 16\nsteps: {}\ngrad_accum_steps: 2\nseed: 3\nthreads: 1\n"
                               "optimizer: {{type: AdamW, lr: 1.0e-3, weight_decay: 0.1}}\n"
                               "scheduler: {{warmup_steps: 1, decay: cosine}}\n"
                               "evaluation: {{every: 0, batches: 2}}\n"
                               "checkpointing: {{dir: {}, every: {}, keep_last: 1}}\n{}",
                               s.batch, s.steps, run, s.save_every, distributed);
    return path.string();
  }

  CommandResult run_ranks(int ranks, const std::string& command, const std::string& config,
                          const std::string& env = "") const {
    const std::string binary = test::retort_binary() + " " + command + " " + config;
    if (ranks == 1) return run_command("cd " + dir_.string() + " && " + binary + " 2>&1");
    return run_command("cd " + dir_.string() + " && " + test::mpirun_prefix(ranks, env) + binary + " 2>&1");
  }

  std::vector<double> losses(const std::string& run) const {
    std::ifstream in(dir_ / run / "metrics.jsonl");
    std::vector<double> values;
    for (std::string line; std::getline(in, line);) values.push_back(nlohmann::json::parse(line)["loss"].get<double>());
    return values;
  }

  // Each tensor of the final checkpoints within `tolerance` relative (L2 norm of the difference over
  // the tensor's). Without distributed.reproducible 1e-5 and not element by element: the gradient
  // sums over rows are split differently across ranks (float rounding ~1e-7), and Adam divides by √v,
  // so an element whose gradient nearly cancels can move by a visible fraction of lr. Measured on
  // these configs: up to 6e-6 on the worst tensor.
  void expect_same_weights(const std::string& a, const std::string& b, double tolerance) const {
    const fs::path step = fmt::format("step-{:08d}", kSteps);
    const SafetensorsFile fa((dir_ / a / step / "model.safetensors").string());
    const SafetensorsFile fb((dir_ / b / step / "model.safetensors").string());
    ASSERT_EQ(fa.tensors().size(), fb.tensors().size());
    for (size_t t = 0; t < fa.tensors().size(); ++t) {
      const auto& ta = fa.tensors()[t];
      const auto& tb = fb.tensors()[t];
      ASSERT_EQ(ta.name, tb.name);
      ASSERT_EQ(ta.size_bytes, tb.size_bytes);
      const auto* x = reinterpret_cast<const float*>(ta.data);
      const auto* y = reinterpret_cast<const float*>(tb.data);
      double difference = 0, norm = 0;
      for (int64_t i = 0; i < ta.element_count(); ++i) {
        difference += (double(x[i]) - double(y[i])) * (double(x[i]) - double(y[i]));
        norm += double(x[i]) * double(x[i]);
      }
      EXPECT_LE(std::sqrt(difference), tolerance * std::sqrt(norm)) << ta.name << ": " << a << " vs " << b;
    }
  }

  void expect_same_run(const std::string& a, const std::string& b, double weight_tolerance) const {
    const auto la = losses(a), lb = losses(b);
    ASSERT_EQ(la.size(), size_t(kSteps));
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], lb[i], 1e-6 * std::fabs(la[i])) << "step " << i + 1;
    expect_same_weights(a, b, weight_tolerance);
  }

  // One process with batch ranks·1 against `ranks` ranks of batch 1, both with accumulation 2.
  void compare(const std::string& command, int ranks, const std::string& allreduce, const std::string& env) {
    const CommandResult one = run_ranks(1, command, write_config(command, "one", {.batch = ranks}));
    ASSERT_EQ(one.status, 0) << one.output;
    const CommandResult many = run_ranks(ranks, command, write_config(command, "many", {.ranks = ranks, .allreduce = allreduce}), env);
    ASSERT_EQ(many.status, 0) << many.output;
    expect_same_run("one", "many", 1e-5);
  }

  // The same with distributed.reproducible on both sides (and ZeRO-1 `zero` on the ranks): the
  // issue's 1e-6 per tensor; in practice the checkpoints are byte for byte the same (f64 sums that
  // differ by grouping round to the same f32 gradient), which is checked too. The logged losses (f64
  // sums of the ranks' terms) may differ in their last bits.
  void compare_reproducible(const std::string& command, int ranks, const std::string& allreduce,
                            const std::string& env, int zero) {
    const CommandResult one =
        run_ranks(1, command, write_config(command, "one", {.batch = ranks, .reproducible = true}));
    ASSERT_EQ(one.status, 0) << one.output;
    const CommandResult many =
        run_ranks(ranks, command, write_config(command, "many", {.ranks = ranks, .allreduce = allreduce, .zero = zero, .reproducible = true}), env);
    ASSERT_EQ(many.status, 0) << many.output;
    expect_same_run("one", "many", 1e-6);
    expect_identical_checkpoints("one", "many");
  }

  // The final checkpoints of two runs hold the same bytes (weights and Adam moments).
  void expect_identical_checkpoints(const std::string& a, const std::string& b, int64_t steps = kSteps) const {
    const fs::path step = fmt::format("step-{:08d}", steps);
    for (const char* file : {"model.safetensors", "optimizer.safetensors"})
      EXPECT_TRUE(read_text_file((dir_ / a / step / file).string()) == read_text_file((dir_ / b / step / file).string()))
          << file << ": " << a << " vs " << b;
  }
  // ... and the runs logged the same losses.
  void expect_identical_runs(const std::string& a, const std::string& b, int64_t steps = kSteps) const {
    expect_identical_checkpoints(a, b, steps);
    EXPECT_EQ(losses(a), losses(b)) << a << " vs " << b;
  }

  // `ranks` ranks with ZeRO-1 against the same ranks without it: the same run, bit for bit.
  void compare_zero_one(const std::string& command, int ranks, const std::string& allreduce, const std::string& env) {
    const CommandResult plain = run_ranks(ranks, command, write_config(command, "plain", {.ranks = ranks, .allreduce = allreduce}), env);
    ASSERT_EQ(plain.status, 0) << plain.output;
    const CommandResult sharded =
        run_ranks(ranks, command, write_config(command, "sharded", {.ranks = ranks, .allreduce = allreduce, .zero = 1}), env);
    ASSERT_EQ(sharded.status, 0) << sharded.output;
    EXPECT_NE(sharded.output.find(fmt::format("ZeRO-1: Adam moments sharded over {} ranks", ranks)), std::string::npos)
        << sharded.output;
    expect_identical_runs("plain", "sharded");
  }

  // `ranks` ranks summing the model's gradients in buckets during the backward against the same
  // ranks summing after it: the same run, bit for bit (each element is still summed in rank order).
  // 0.01 MiB buckets cut the tiny model's gradients into many (each layer its own bucket or more).
  void compare_buckets(const std::string& command, int ranks, const std::string& allreduce, const std::string& env,
                       int zero) {
    const CommandResult after =
        run_ranks(ranks, command, write_config(command, "after", {.ranks = ranks, .allreduce = allreduce, .zero = zero, .bucket_mb = 0}), env);
    ASSERT_EQ(after.status, 0) << after.output;
    const RunSettings bucketed{.ranks = ranks, .allreduce = allreduce, .zero = zero, .bucket_mb = 0.01};
    const CommandResult during = run_ranks(ranks, command, write_config(command, "during", bucketed), env);
    ASSERT_EQ(during.status, 0) << during.output;
    EXPECT_NE(during.output.find("buckets of 0.01 MiB summed during it"), std::string::npos) << during.output;
    expect_identical_runs("after", "during");
  }

  std::string model_;
  fs::path dir_;
};

TEST_F(TrainMpi, TrainTwoRanksBucketsDuringTheBackwardAreBitwiseOneSumAfterIt) {
  compare_buckets("train", 2, "flat", "", 0);
}
TEST_F(TrainMpi, DistillFourRanksHierarchicalZeroOneBucketsAreBitwiseOneSumAfterIt) {
  compare_buckets("distill", 4, "hierarchical", "RETORT_RANKS_PER_NODE=2", 1);
}

TEST_F(TrainMpi, TrainTwoRanksFlatMatchesOneProcess) { compare("train", 2, "flat", ""); }
TEST_F(TrainMpi, TrainFourRanksHierarchicalMatchesOneProcess) {
  compare("train", 4, "hierarchical", "RETORT_RANKS_PER_NODE=2");
}
TEST_F(TrainMpi, DistillTwoRanksHierarchicalMatchesOneProcess) {
  compare("distill", 2, "hierarchical", "RETORT_RANKS_PER_NODE=1");
}
TEST_F(TrainMpi, DistillFourRanksFlatMatchesOneProcess) { compare("distill", 4, "flat", ""); }

TEST_F(TrainMpi, ReproducibleTrainFourRanksHierarchicalIsTheOneProcessRun) {
  compare_reproducible("train", 4, "hierarchical", "RETORT_RANKS_PER_NODE=2", 0);
}
TEST_F(TrainMpi, ReproducibleTrainTwoRanksZeroOneIsTheOneProcessRun) {
  compare_reproducible("train", 2, "flat", "", 1);
}
TEST_F(TrainMpi, ReproducibleDistillFourRanksFlatZeroOneIsTheOneProcessRun) {
  compare_reproducible("distill", 4, "flat", "", 1);
}
TEST_F(TrainMpi, ReproducibleDistillTwoRanksHierarchicalIsTheOneProcessRun) {
  compare_reproducible("distill", 2, "hierarchical", "RETORT_RANKS_PER_NODE=1", 0);
}

TEST_F(TrainMpi, TrainTwoRanksZeroOneIsBitwiseTheUnshardedRun) { compare_zero_one("train", 2, "flat", ""); }
TEST_F(TrainMpi, DistillFourRanksHierarchicalZeroOneIsBitwiseTheUnshardedRun) {
  compare_zero_one("distill", 4, "hierarchical", "RETORT_RANKS_PER_NODE=2");
}

TEST_F(TrainMpi, DeviceNumOtherThanWorldSizeIsRefusedOnEveryRank) {
  const std::string config = write_config("train", "bad", {.ranks = 4});
  const CommandResult run = run_ranks(2, "train", config);
  EXPECT_NE(run.status, 0) << run.output;
  EXPECT_NE(run.output.find("distributed.device_num is 4 but the MPI world size is 2"), std::string::npos)
      << run.output;
  EXPECT_FALSE(fs::exists(dir_ / "bad" / fmt::format("step-{:08d}", kSteps)));
}

TEST_F(TrainMpi, ResumeOnAnotherNumberOfRanksIsRefusedWithTheReason) {
  const CommandResult two = run_ranks(2, "train", write_config("train", "run", {.ranks = 2}));
  ASSERT_EQ(two.status, 0) << two.output;
  const CommandResult four = run_command("cd " + dir_.string() + " && " + test::mpirun_prefix(4) +
                                         test::retort_binary() + " train " + write_config("train", "run", {.ranks = 4}) +
                                         " --resume 2>&1");
  EXPECT_NE(four.status, 0) << four.output;
  EXPECT_NE(four.output.find("was written by a run on 2 rank(s), but this run has 4"), std::string::npos)
      << four.output;
}

TEST_F(TrainMpi, RanksWithDifferentConfigsAreRefused) {
  const std::string a = write_config("train", "same", {.ranks = 2});
  std::string text;
  {
    std::ifstream in(a);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  text.replace(text.find("seed: 3"), 7, "seed: 4");
  std::ofstream(dir_ / "other.yaml") << text;
  // Two app contexts: rank 0 runs one file, rank 1 the other.
  const std::string binary = test::retort_binary() + " train ";
  const CommandResult run =
      run_command("cd " + dir_.string() + " && " + test::mpirun_prefix(1) + binary + a + " : -np 1 " + binary +
                  (dir_ / "other.yaml").string() + " 2>&1");
  EXPECT_NE(run.status, 0) << run.output;
  EXPECT_NE(run.output.find("1 of the 2 ranks were started with settings that differ from rank 0's"),
            std::string::npos)
      << run.output;
}

// The pid of the retort process that is MPI rank `rank` of the run whose config is `config`.
pid_t find_rank(const std::string& config, int rank) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::ifstream cmdline(entry.path() / "cmdline"), environ(entry.path() / "environ");
    std::string args(std::istreambuf_iterator<char>(cmdline), {}), env(std::istreambuf_iterator<char>(environ), {});
    if (args.find(config) == std::string::npos) continue;  // launched ranks alone carry the variable below
    if (env.find(fmt::format("OMPI_COMM_WORLD_RANK={}", rank) + '\0') != std::string::npos)
      return pid_t(std::stoi(entry.path().filename().string()));
  }
  return -1;
}

TEST_F(TrainMpi, SigkillOfOneRankEndsTheOthersNamingIt) {
  const std::string config = write_config("train", "killed", {.ranks = 2, .steps = 100000});
  CommandResult run;
  std::thread launcher([&] { run = run_ranks(2, "train", config); });
  pid_t victim = -1;
  // Wait until both ranks are stepping (rank 0 has written its metrics file).
  for (int i = 0; i < 600 && (victim < 0 || !fs::exists(dir_ / "killed" / "metrics.jsonl")); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    victim = find_rank(config, 1);
  }
  const auto killed_at = std::chrono::steady_clock::now();
  if (victim > 0) ::kill(victim, SIGKILL);
  launcher.join();  // without a victim, mpirun's 2-minute limit ends the run
  ASSERT_GT(victim, 0) << "rank 1 was not found:\n" << run.output;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  EXPECT_LT(seconds, 30.0) << run.output;
  EXPECT_NE(run.status, 0) << run.output;
  EXPECT_NE(run.output.find("rank 1"), std::string::npos) << run.output;
}

// A ZeRO-1 run on 2 ranks SIGKILLed after its second checkpoint, resumed with --resume on 2 ranks,
// ends with the bytes of the same run left alone (the sharded moments gathered into each checkpoint
// and scattered back on resume).
TEST_F(TrainMpi, ZeroOneRunKilledAndResumedEndsWithTheBytesOfAnUninterruptedRun) {
  constexpr int64_t kLongSteps = 30;
  const CommandResult whole =
      run_ranks(2, "train", write_config("train", "whole", {.ranks = 2, .steps = kLongSteps, .zero = 1, .save_every = 2}));
  ASSERT_EQ(whole.status, 0) << whole.output;
  const std::string config = write_config("train", "cut", {.ranks = 2, .steps = kLongSteps, .zero = 1, .save_every = 2});
  CommandResult cut;
  std::thread launcher([&] { cut = run_ranks(2, "train", config); });
  pid_t victim = -1;
  const fs::path second = dir_ / "cut" / fmt::format("step-{:08d}", 4);
  for (int i = 0; i < 120000 && (victim < 0 || !fs::exists(second)); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (victim < 0) victim = find_rank(config, 1);
  }
  if (victim > 0) ::kill(victim, SIGKILL);
  launcher.join();
  ASSERT_GT(victim, 0) << "rank 1 was not found:\n" << cut.output;
  ASSERT_NE(cut.status, 0) << "the run ended before rank 1 was killed, so nothing was resumed:\n" << cut.output;
  ASSERT_FALSE(fs::exists(dir_ / "cut" / fmt::format("step-{:08d}", kLongSteps))) << cut.output;
  const CommandResult resumed = run_command("cd " + dir_.string() + " && " + test::mpirun_prefix(2) +
                                            test::retort_binary() + " train " + config + " --resume 2>&1");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  expect_identical_runs("whole", "cut", kLongSteps);
}

}  // namespace
}  // namespace retort::train
