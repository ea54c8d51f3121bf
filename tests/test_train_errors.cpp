// Training's error paths through the real `retort train` (issue 17, classes 3 and 9): a
// checkpointing.dir that is a file, one of the inputs or cannot be created, and a damaged
// trainer_state.json are clear errors (exit 1, not an internal error's 2), and the temporary
// directories of checkpoints a killed run left behind are removed when the next run starts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "test_support.h"

namespace retort {
namespace {

namespace fs = std::filesystem;

class TrainErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(model_, "fixture tiny-r1-qwen");
    std::string pattern = (fs::temp_directory_path() / "retort-train-errors-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    std::ofstream data(dir_ / "ids.txt");
    for (int line = 0; line < 12; ++line) {
      for (int t = 0; t < 20; ++t) data << (line * 31 + t * 7) % 500 << ' ';
      data << '\n';
    }
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string config(const std::string& run_dir, int steps = 2) {
    const fs::path path = dir_ / "train.yaml";
    std::ofstream(path) << "model: {init: " << model_ << "}\n"
                        << "data: {train: ids.txt, format: tokens, val_fraction: 0}\n"
                        << "batch_size: 1\nseq_len: 16\nsteps: " << steps << "\nthreads: 1\nlog_every: 100\n"
                        << "checkpointing: {dir: " << run_dir << ", every: 1, keep_last: 1}\n";
    return path.string();
  }
  test::CommandResult train(const std::string& run_dir, const std::string& flags = "") {
    return test::run_command("'" + test::retort_binary() + "' train '" + config(run_dir) + "' " + flags + " 2>&1");
  }

  std::string model_;
  fs::path dir_;
};

TEST_F(TrainErrors, ACheckpointDirectoryThatIsAFileOrAnInputIsRefused) {
  std::ofstream(dir_ / "file") << "keep";
  auto run = train((dir_ / "file").string());
  EXPECT_EQ(run.status, 1) << run.output;
  EXPECT_NE(run.output.find("is a regular file, not a directory"), std::string::npos) << run.output;
  run = train(model_);
  EXPECT_EQ(run.status, 1) << run.output;
  EXPECT_NE(run.output.find("is the input"), std::string::npos) << run.output;
}

TEST_F(TrainErrors, AnUncreatableCheckpointDirectoryIsAClearError) {
  std::ofstream(dir_ / "file") << "keep";
  for (const std::string& run_dir : {(dir_ / "file" / "run").string(), std::string("/proc/retort-no-such/run")}) {
    const auto run = train(run_dir);
    EXPECT_EQ(run.status, 1) << run.output;
    EXPECT_EQ(run.output.find("internal"), std::string::npos) << run.output;
  }
}

TEST_F(TrainErrors, ADamagedTrainerStateIsAClearErrorAndStaleTemporariesAreRemoved) {
  const fs::path run_dir = dir_ / "run";
  fs::create_directories(run_dir);
  // What a checkpoint being written by a process killed mid-save leaves behind (no process has
  // that pid: it is above Linux's largest, 2^22).
  fs::create_directories(run_dir / ".step-00000001.tmp-999999999");
  auto run = train(run_dir.string());
  ASSERT_EQ(run.status, 0) << run.output;
  EXPECT_FALSE(fs::exists(run_dir / ".step-00000001.tmp-999999999")) << run.output;
  const fs::path state = run_dir / "step-00000002" / "trainer_state.json";
  ASSERT_TRUE(fs::exists(state)) << run.output;
  for (const std::string& damage : {std::string("{\"step\": \"two\"}"), std::string("not json")}) {
    std::ofstream(state) << damage;
    run = train(run_dir.string(), "--resume");
    EXPECT_EQ(run.status, 1) << run.output;
    EXPECT_NE(run.output.find("not a valid retort trainer state"), std::string::npos) << run.output;
  }
}

}  // namespace
}  // namespace retort
