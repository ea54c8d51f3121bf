// `retort distill` SIGKILLed mid-run through the real binary and resumed with --resume ends with the
// same bytes as an uninterrupted run: the student's weights, its Adam moments, the trainer state,
// the projections with their moments and the running term magnitudes (distill_state.safetensors),
// and the per-step term log. Tiny: the tiny-r1-qwen fixture as teacher, a 2-layer student, random
// token ids, every loss term and the magnitude-normalized weighting (so every piece of state counts).
#include <gtest/gtest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>

#include "test_support.h"

namespace retort::test {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class DistillResume : public ::testing::Test {
 protected:
  void SetUp() override {
    teacher_ = shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(teacher_, "fixture tiny-r1-qwen");
    dir_ = fs::temp_directory_path() / fmt::format("retort-distill-resume-{}", getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::mt19937 rng(5);
    std::ofstream data(dir_ / "ids.txt");
    for (int line = 0; line < 40; ++line) {
      for (int t = 0; t < 18 + line % 13; ++t) data << (rng() % 500) << ' ';
      data << '\n';
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write_config(const std::string& name, const std::string& run_dir) const {
    const fs::path path = dir_ / name;
    std::ofstream(path) << fmt::format(
        "teacher: {{model: {}}}\n"
        "student: {{from_teacher: true, layers: [0, 2], intermediate_size: 128}}\n"
        "distill:\n"
        "  weights: {{hard: 0.5, soft: 0.5, hidden: 0.2, attention: 0.2}}\n"
        "  weighting: normalized\n"
        "  soft: {{temperature: 2.0}}\n"
        "  hidden: {{loss: mse, layer_map: [[1, 1], [2, 3]]}}\n"
        "  attention: {{loss: kl, layer_map: [[0, 0], [1, 2]]}}\n"
        "data: {{train: ids.txt, format: tokens, val_fraction: 0.1}}\n"
        "batch_size: 2\nseq_len: 20\nsteps: {}\ngrad_accum_steps: 2\nseed: 4\nthreads: 1\nlog_every: 100\n"
        "optimizer: {{type: AdamW, lr: 1.0e-3, weight_decay: 0.1}}\n"
        "scheduler: {{warmup_steps: 2, decay: cosine}}\n"
        "evaluation: {{every: 6, batches: 2}}\n"
        "checkpointing: {{dir: {}, every: 2, keep_last: 2}}\n",
        teacher_, kSteps, run_dir);
    return path.string();
  }

  static constexpr int kSteps = 40;
  std::string teacher_;
  fs::path dir_;
};

TEST_F(DistillResume, SigkillThenResumeGivesTheBytesOfAnUninterruptedRun) {
  const std::string whole = write_config("whole.yaml", "whole");
  const CommandResult done = run_command(retort_binary() + " distill " + whole + " 2>&1");
  ASSERT_EQ(done.status, 0) << done.output;
  const fs::path final_name = fmt::format("step-{:08d}", kSteps);
  ASSERT_TRUE(fs::exists(dir_ / "whole" / final_name / "distill_state.safetensors")) << done.output;

  const std::string killed = write_config("killed.yaml", "killed");
  // Kill it after its second checkpoint (step 4) once step 5 is logged: in step 6, past the last
  // checkpoint, so the resumed run redoes step 5 and must not log it twice.
  auto logged_steps = [&] {
    std::ifstream in(dir_ / "killed" / "distill_metrics.jsonl");
    return std::count(std::istreambuf_iterator<char>(in), {}, '\n');
  };
  ASSERT_TRUE(kill_retort_when({"distill", killed}, [&] {
    return fs::exists(dir_ / "killed" / "step-00000004" / "distill_state.safetensors") && logged_steps() >= 5;
  })) << "the run ended before it could be killed";
  ASSERT_FALSE(fs::exists(dir_ / "killed" / final_name));

  const CommandResult resumed = run_command(retort_binary() + " distill " + killed + " --resume 2>&1");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming from"), std::string::npos) << resumed.output;
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "trainer_state.json",
                           "distill_state.safetensors"}) {
    EXPECT_EQ(read_bytes(dir_ / "whole" / final_name / file), read_bytes(dir_ / "killed" / final_name / file))
        << file << " differs after kill and resume";
  }
  // Every step's terms and weights logged once, as in the uninterrupted run.
  const std::string whole_terms = read_bytes(dir_ / "whole" / "distill_metrics.jsonl");
  const std::string resumed_terms = read_bytes(dir_ / "killed" / "distill_metrics.jsonl");
  EXPECT_TRUE(whole_terms == resumed_terms) << "distill_metrics.jsonl: " << std::count(whole_terms.begin(), whole_terms.end(), '\n')
                                            << " lines uninterrupted, " << std::count(resumed_terms.begin(), resumed_terms.end(), '\n')
                                            << " after kill and resume";
}

}  // namespace
}  // namespace retort::test
