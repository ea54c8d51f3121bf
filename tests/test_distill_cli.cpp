// `retort distill` end to end on the tiny-r1-qwen fixture as teacher (a few steps, small batch):
// a run with every loss term, its checkpoint (HF directory + projection state), --resume, and
// `retort distill generate` writing, skipping answered prompts and dropping a torn last line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace retort::test {
namespace {

namespace fs = std::filesystem;

struct DistillCliTest : ::testing::Test {
  void SetUp() override {
    teacher = shared_path("fixtures/tiny-r1-qwen");
    text = shared_path("data/tinyshakespeare/input.txt");
    dir = fs::temp_directory_path() / ("retort-distill-cli-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  std::string write_config(const std::string& extra, int steps) {
    const std::string path = (dir / "distill.yaml").string();
    std::ofstream(path) << "teacher: {model: " << teacher << "}\n"
                        << "student: {from_teacher: true, every: 2, intermediate_size: 128}\n"
                        << "data: {train: " << text << ", format: text, val_fraction: 0.01}\n"
                        << "batch_size: 2\nseq_len: 16\nsteps: " << steps << "\nthreads: 1\n"
                        << "evaluation: {batches: 2}\n"
                        << "checkpointing: {dir: " << (dir / "run").string() << ", every: 2}\n"
                        << extra;
    return path;
  }

  std::string teacher, text;
  fs::path dir;
};

const char* kAllTerms =
    "distill:\n"
    "  weights: {hard: 0.5, soft: 0.5, hidden: 0.1, attention: 1.0}\n"
    "  weighting: normalized\n"
    "  hidden: {loss: cosine, layer_map: [[1, 1], [2, 3]]}\n"
    "  attention: {loss: kl, layer_map: [[0, 0], [1, 2]]}\n"
    "  chunk_rows: 7\n";

TEST_F(DistillCliTest, RunsEveryTermCheckpointsAndResumes) {
  RETORT_REQUIRE_PATH(teacher, "the tiny-r1-qwen fixture");
  RETORT_REQUIRE_PATH(text, "Tiny Shakespeare (../shared/data/tinyshakespeare)");
  const std::string config = write_config(kAllTerms, 2);
  CommandResult r = run_command(retort_binary() + " distill " + config + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("·attn"), std::string::npos) << "the log shows each term with its weight";
  const fs::path step2 = dir / "run" / "step-00000002";
  EXPECT_TRUE(fs::exists(step2 / "model.safetensors"));
  EXPECT_TRUE(fs::exists(step2 / "distill_state.safetensors"));
  EXPECT_TRUE(fs::exists(step2 / "tokenizer.json"));
  std::ifstream terms(dir / "run" / "distill_metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(terms, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_GT(j["attention"].get<double>(), 0.0);
    EXPECT_GT(j["w_soft"].get<double>(), 0.0);
    ++lines;
  }
  EXPECT_EQ(lines, 2);
  // Continue to step 3 from the step-2 checkpoint.
  write_config(kAllTerms, 3);
  r = run_command(retort_binary() + " distill " + config + " --resume 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir / "run" / "step-00000003" / "model.safetensors"));
  // A fresh run into a directory with checkpoints is refused.
  r = run_command(retort_binary() + " distill " + config + " 2>&1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--resume"), std::string::npos) << r.output;
}

TEST_F(DistillCliTest, BadLayerMapIsAClearError) {
  RETORT_REQUIRE_PATH(teacher, "the tiny-r1-qwen fixture");
  RETORT_REQUIRE_PATH(text, "Tiny Shakespeare (../shared/data/tinyshakespeare)");
  const std::string config =
      write_config("distill: {weights: {hidden: 1.0}, hidden: {layer_map: [[1, 9]]}}\n", 1);
  const CommandResult r = run_command(retort_binary() + " distill " + config + " 2>&1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("teacher hidden state 9 does not exist"), std::string::npos) << r.output;
}

TEST_F(DistillCliTest, GenerateWritesResponsesResumesAndDropsATornLine) {
  RETORT_REQUIRE_PATH(teacher, "the tiny-r1-qwen fixture");
  RETORT_REQUIRE_PATH(text, "Tiny Shakespeare (../shared/data/tinyshakespeare)");
  const fs::path prompts = dir / "prompts.jsonl", out = dir / "out" / "responses.jsonl";
  // A repeated prompt is answered again: one response line per prompt line.
  std::ofstream(prompts) << "{\"prompt\": \"First Citizen:\"}\n{\"prompt\": \"ROMEO:\"}\n\n{\"prompt\": \"KING:\"}\n"
                         << "{\"prompt\": \"ROMEO:\"}\n";
  const std::string config = write_config("generate: {prompts: " + prompts.string() + ", output: " + out.string() +
                                              ", max_tokens: 4, temperature: 0.8, seed: 3}\n",
                                          1);
  CommandResult r = run_command(retort_binary() + " distill generate " + config + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  auto read_lines = [&] {
    std::vector<nlohmann::json> rows;
    std::ifstream in(out);
    std::string line;
    while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
    return rows;
  };
  auto rows = read_lines();
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[1]["prompt"], "ROMEO:");
  EXPECT_EQ(rows[3]["prompt"], "ROMEO:");
  EXPECT_TRUE(rows[1]["response"].is_string());
  // Tear the last line as a kill would, then resume: the torn prompt is answered again, the others skipped.
  const std::string kept =
      rows[0].dump() + "\n" + rows[1].dump() + "\n" + rows[2].dump() + "\n" + rows[3].dump().substr(0, 10);
  std::ofstream(out, std::ios::trunc) << kept;
  r = run_command(retort_binary() + " distill generate " + config + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("1 responses written, 3 prompts already answered"), std::string::npos) << r.output;
  const auto resumed = read_lines();
  ASSERT_EQ(resumed.size(), 4u);
  EXPECT_EQ(resumed[3], rows[3]) << "each prompt's seed is fixed by its index, so the resumed line is the same";
  // An output that answers other prompts (the prompt file changed) is refused, not mixed.
  std::ofstream(prompts, std::ios::trunc) << "{\"prompt\": \"First Citizen:\"}\n{\"prompt\": \"JULIET:\"}\n";
  r = run_command(retort_binary() + " distill generate " + config + " 2>&1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("answers a prompt other than prompt 2"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace retort::test
