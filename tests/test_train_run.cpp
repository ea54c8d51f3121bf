// The training loop end to end through the real `retort train` binary: a run SIGKILLed mid-way
// and resumed ends with the same bytes as an uninterrupted run; and bad input (unknown keys, wrong
// types, sequence length over the model's positions, a checkpoint of another model, NaN loss) is a
// clear error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "test_support.h"
#include "train/train_config.h"
#include "util/error.h"

namespace retort::train {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class TrainRun : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(model_, "fixture tiny-r1-qwen");
    dir_ = fs::temp_directory_path() / fmt::format("retort-train-{}-{}", getpid(), ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::mt19937 rng(7);
    std::ofstream data(dir_ / "ids.txt");
    for (int line = 0; line < 40; ++line) {
      for (int t = 0; t < 20 + line % 17; ++t) data << (rng() % 500) << ' ';
      data << '\n';
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A config training the fixture model on ids.txt; `extra` adds top-level keys not set here.
  std::string write_config(const std::string& name, const std::string& run_dir, const std::string& extra,
                           int64_t steps = 12, int64_t seq_len = 24) {
    const fs::path path = dir_ / name;
    std::ofstream(path) << fmt::format(
        "model: {{init: {}}}\n"
        "data: {{train: ids.txt, format: tokens, val_fraction: 0.1}}\n"
        "batch_size: 2\nseq_len: {}\nsteps: {}\ngrad_accum_steps: 2\nseed: 3\nthreads: 2\nlog_every: 100\n"
        "optimizer: {{type: AdamW, lr: 1.0e-3, weight_decay: 0.1}}\n"
        "scheduler: {{warmup_steps: 2, decay: cosine}}\n"
        "evaluation: {{every: 4, batches: 2}}\n"
        "checkpointing: {{dir: {}, every: 2, keep_last: 2}}\n{}",
        model_, seq_len, steps, run_dir, extra);
    return path.string();
  }

  test::CommandResult train(const std::string& config, const std::string& flags = "") {
    return test::run_command(test::retort_binary() + " train " + config + " " + flags + " 2>&1");
  }

  std::string model_;
  fs::path dir_;
};

TEST_F(TrainRun, SigkillThenResumeGivesTheBytesOfAnUninterruptedRun) {
  const int64_t steps = 60;
  const std::string whole = write_config("whole.yaml", "whole", "", steps);
  auto done = train(whole);
  ASSERT_EQ(done.status, 0) << done.output;
  const fs::path final_name = fmt::format("step-{:08d}", steps);
  ASSERT_TRUE(fs::exists(dir_ / "whole" / final_name / "model.safetensors")) << done.output;
  EXPECT_TRUE(fs::exists(dir_ / "whole" / "report.html"));
  EXPECT_TRUE(fs::exists(dir_ / "whole" / "metrics.jsonl"));

  const std::string killed = write_config("killed.yaml", "killed", "", steps);
  // Kill it as soon as its second checkpoint is complete: well before the end.
  ASSERT_TRUE(test::kill_retort_when({"train", killed},
                                     [&] { return fs::exists(dir_ / "killed" / "step-00000004" / "trainer_state.json"); }))
      << "the run ended before it could be killed";
  ASSERT_FALSE(fs::exists(dir_ / "killed" / final_name));

  auto resumed = train(killed, "--resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming from"), std::string::npos) << resumed.output;
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "trainer_state.json"}) {
    EXPECT_EQ(read_bytes(dir_ / "whole" / final_name / file), read_bytes(dir_ / "killed" / final_name / file))
        << file << " differs after kill and resume";
  }
  // Only the last two checkpoints are kept.
  int checkpoints = 0;
  for (const auto& e : fs::directory_iterator(dir_ / "killed")) checkpoints += e.path().filename().string().rfind("step-", 0) == 0;
  EXPECT_EQ(checkpoints, 2);
}

// memory.mixed_precision: bf16 end to end: the per-step losses track an f32 run of the same
// config, and a run stopped at step 4 and resumed ends with the bytes of an uninterrupted one (the
// bf16 products sum in a fixed order, like the f32 ones).
TEST_F(TrainRun, Bf16MixedPrecisionTracksF32AndResumesBitwise) {
  auto config = [&](const std::string& name, const std::string& run_dir, int64_t steps, bool bf16) {
    std::string text = read_bytes(write_config(name, run_dir, bf16 ? "memory: {mixed_precision: bf16}\n" : "", steps));
    text.replace(text.find("decay: cosine"), 13, "decay: constant");  // so a longer run continues a shorter one
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  };
  auto losses = [&](const std::string& run_dir) {
    std::vector<double> values;
    std::ifstream in(dir_ / run_dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) values.push_back(nlohmann::json::parse(line)["loss"].get<double>());
    return values;
  };
  auto f32 = train(config("f32.yaml", "f32", 8, false));
  ASSERT_EQ(f32.status, 0) << f32.output;
  auto whole = train(config("whole.yaml", "whole", 8, true));
  ASSERT_EQ(whole.status, 0) << whole.output;
  EXPECT_NE(whole.output.find("memory.mixed_precision = bf16"), std::string::npos) << whole.output;
  const auto want = losses("f32"), got = losses("whole");
  ASSERT_EQ(got.size(), 8u);
  ASSERT_EQ(want.size(), 8u);
  // The fixture test bounds one forward's loss at 1e-2 relative; eight steps of weights that
  // drift apart by bf16-rounded gradients get twice that.
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 2e-2 * want[i]) << "step " << i + 1;
    worst = std::max(worst, std::fabs(got[i] - want[i]) / want[i]);
  }
  std::printf("bf16 vs f32 loss over 8 steps: worst relative difference %.2g (final %.5f vs %.5f)\n", worst,
              got.back(), want.back());
  EXPECT_NE(got, want) << "bf16 gave the f32 losses exactly: the products were not rounded";

  ASSERT_EQ(train(config("part.yaml", "part", 4, true)).status, 0);
  auto resumed = train(config("part.yaml", "part", 8, true), "--resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(read_bytes(dir_ / "whole" / "step-00000008" / "model.safetensors"),
            read_bytes(dir_ / "part" / "step-00000008" / "model.safetensors"));
}

// memory.mixed_precision: fp16 end to end with a first loss scale far too big (2^26): the first
// steps overflow and are skipped, each halving the scale; after `growth_interval` (3) good steps
// in a row the scale doubles; the metrics say which steps were skipped and at what scale; the
// loss still falls; and a run stopped at step 8 and resumed ends with the bytes of an
// uninterrupted one (the scale and its counters are in the checkpoint).
TEST_F(TrainRun, Fp16DynamicLossScalingSkipsOverflowsGrowsAndResumesBitwise) {
  auto config = [&](const std::string& name, const std::string& run_dir, int64_t steps) {
    std::string text = read_bytes(write_config(
        name, run_dir, "memory: {mixed_precision: fp16, loss_scale: {initial: 67108864, growth_interval: 3}}\n", steps));
    text.replace(text.find("decay: cosine"), 13, "decay: constant");  // so a longer run continues a shorter one
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  };
  constexpr int64_t kSteps = 16;
  auto whole = train(config("whole.yaml", "whole", kSteps));
  ASSERT_EQ(whole.status, 0) << whole.output;
  std::vector<nlohmann::json> records;
  std::ifstream in(dir_ / "whole" / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(records.size(), size_t(kSteps));
  ASSERT_EQ(records[0]["loss_scale"].get<double>(), 67108864.0);
  int skipped = 0, grown = 0, good_in_a_row = 0;
  for (size_t i = 0; i + 1 < records.size(); ++i) {
    const double scale = records[i]["loss_scale"].get<double>(), next = records[i + 1]["loss_scale"].get<double>();
    if (records[i].value("skipped", false)) {
      ++skipped, good_in_a_row = 0;
      EXPECT_EQ(next, scale / 2) << "after skipped step " << i + 1;
      EXPECT_EQ(records[i]["grad_norm"].get<double>(), 0.0);
    } else if (++good_in_a_row == 3) {
      ++grown, good_in_a_row = 0;
      EXPECT_EQ(next, scale * 2) << "after the third good step in a row, step " << i + 1;
    } else {
      EXPECT_EQ(next, scale) << "after step " << i + 1;
    }
  }
  EXPECT_GE(skipped, 1) << "2^26 should overflow fp16's gradients at first";
  EXPECT_GE(grown, 1);
  EXPECT_NE(whole.output.find("step skipped"), std::string::npos) << whole.output;
  EXPECT_LT(records.back()["loss"].get<double>(), records.front()["loss"].get<double>());

  ASSERT_EQ(train(config("part.yaml", "part", 8)).status, 0);
  auto resumed = train(config("part.yaml", "part", kSteps), "--resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  const fs::path last = fmt::format("step-{:08d}", kSteps);
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "trainer_state.json"})
    EXPECT_EQ(read_bytes(dir_ / "whole" / last / file), read_bytes(dir_ / "part" / last / file)) << file;
}

TEST_F(TrainRun, ConfigErrorsNameThePath) {
  auto unknown = train(write_config("unknown.yaml", "u", "memory: {activation_checkpointin: true}\n"));
  EXPECT_NE(unknown.status, 0);
  EXPECT_NE(unknown.output.find("unknown key 'memory.activation_checkpointin'"), std::string::npos) << unknown.output;

  EXPECT_THROW(parse_train_config("steps: many\nmodel: {init: x}\ndata: {train: y}\n", "c.yaml", "."), Error);
  try {
    parse_train_config("steps: many\nmodel: {init: x}\ndata: {train: y}\n", "c.yaml", ".");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'steps' must be an integer, got 'many'"), std::string::npos) << e.what();
  }
  try {
    parse_train_config("optimizer: {lr: [1, 2]}\nmodel: {init: x}\ndata: {train: y}\n", "c.yaml", ".");
    FAIL() << "a list for a number was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer.lr"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_train_config("data: {train: y}\n", "c.yaml", "."), Error);  // no model
  for (const char* bucket : {"-1", ".nan", "2000000"}) {
    try {
      parse_train_config(fmt::format("model: {{init: x}}\ndata: {{train: y}}\ndistributed: {{bucket_mb: {}}}\n", bucket),
                         "c.yaml", ".");
      FAIL() << "bucket_mb " << bucket << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("distributed.bucket_mb must be between 0"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(parse_train_config("model: {init: x}\ndata: {train: y}\n", "c.yaml", ".").bucket_mb, 25);
  std::vector<ConfigEntry> entries;
  parse_train_config("model: {init: x}\ndata: {train: y}\n", "c.yaml", ".", &entries);
  auto lr = std::find_if(entries.begin(), entries.end(), [](const ConfigEntry& e) { return e.path == "optimizer.lr"; });
  ASSERT_NE(lr, entries.end());
  EXPECT_TRUE(lr->from_default);
}

TEST_F(TrainRun, SequenceLengthOverTheModelsPositionsIsAnError) {
  auto run = train(write_config("long.yaml", "long", "", 2, 5000));
  EXPECT_NE(run.status, 0);
  EXPECT_NE(run.output.find("over the model's 4096 positions"), std::string::npos) << run.output;
}

TEST_F(TrainRun, ResumeFromAnotherModelsCheckpointIsAnError) {
  ASSERT_EQ(train(write_config("a.yaml", "shared-dir", "", 2)).status, 0);
  const std::string llama = test::shared_path("fixtures/tiny-r1-llama");
  RETORT_REQUIRE_PATH(llama, "fixture tiny-r1-llama");
  std::string text = read_bytes(write_config("b.yaml", "shared-dir", "", 4));
  text.replace(text.find(model_), model_.size(), llama);
  std::ofstream(dir_ / "b.yaml") << text;
  auto run = train((dir_ / "b.yaml").string(), "--resume");
  EXPECT_NE(run.status, 0);
  EXPECT_NE(run.output.find("checkpoint of another model"), std::string::npos) << run.output;
  auto fresh = train((dir_ / "b.yaml").string());
  EXPECT_NE(fresh.status, 0);
  EXPECT_NE(fresh.output.find("pass --resume"), std::string::npos) << fresh.output;
}

TEST_F(TrainRun, NonFiniteLossStopsNamingStepAndLastCheckpoint) {
  std::string text = read_bytes(write_config("nan.yaml", "nan", "", 6));
  text.replace(text.find("lr: 1.0e-3"), 10, "lr: 1.0e+30");
  text.replace(text.find("warmup_steps: 2"), 15, "warmup_steps: 0");
  text.replace(text.find("every: 2, keep_last"), 8, "every: 1");
  std::ofstream(dir_ / "nan.yaml") << text;
  auto run = train((dir_ / "nan.yaml").string());
  EXPECT_NE(run.status, 0);
  EXPECT_NE(run.output.find("training stopped"), std::string::npos) << run.output;
  // Step 1 runs on the fixture's weights; its huge update makes step 2's loss non-finite.
  EXPECT_NE(run.output.find("step 2: the loss is"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("Last good checkpoint: " + (dir_ / "nan" / "step-00000001").string()), std::string::npos)
      << run.output;
}

TEST_F(TrainRun, UnparsableDataNamesTheLine) {
  std::ofstream(dir_ / "ids.txt", std::ios::app) << "1 2 three 4\n";
  auto run = train(write_config("bad.yaml", "bad", "", 2));
  EXPECT_NE(run.status, 0);
  EXPECT_NE(run.output.find("ids.txt:41: 'three' is not a token id"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace retort::train
