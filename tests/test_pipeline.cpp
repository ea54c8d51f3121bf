// `retort pipeline`: every stage on the tiny-r1-qwen fixture as the teacher (a few steps each),
// then the resume rules: finished stages are skipped, --from redoes a stage and the later ones, a
// changed config is refused until --from says what to redo; and the config's errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eval/pipeline.h"
#include "test_support.h"
#include "util/error.h"

namespace retort {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class Pipeline : public testing::Test {
 protected:
  void SetUp() override {
    teacher_ = test::shared_path("fixtures/tiny-r1-qwen");
    text_ = test::shared_path("data/tinyshakespeare/input.txt");
    RETORT_REQUIRE_PATH(teacher_, "the tiny-r1-qwen fixture");
    RETORT_REQUIRE_PATH(text_, "Tiny Shakespeare");
    dir_ = fs::temp_directory_path() / ("retort-pipeline-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "intents.csv") << "text,label\nI lost my card,card\nwhere is my money,transfer\n"
                                           "my card is broken,card\nsend money abroad,transfer\n";
    std::ofstream(dir_ / "labels.json") << R"(["card", "transfer"])";
    std::ofstream(dir_ / "references.jsonl") << R"({"prompt": "First Citizen:", "reference": "Before we proceed any further, hear me speak."}
{"prompt": "All:", "references": ["Speak, speak."]}
)";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string config_text(int64_t chunks = 2) const {
    return "dir: out\n"
           "teacher: {model: " + teacher_ + "}\n"
           "student:\n"
           "  distill:\n"
           "    student: {from_teacher: true, layers: [0, 2]}\n"
           "    distill: {weights: {hard: 0.5, soft: 0.5}, soft: {temperature: 2.0}}\n"
           "    data: {train: " + text_ + ", format: text, val_fraction: 0.01}\n"
           "    batch_size: 2\n    seq_len: 32\n    steps: 3\n    seed: 5\n    threads: 2\n"
           "    optimizer: {type: AdamW, lr: 1.0e-3}\n"
           "    evaluation: {batches: 2}\n"
           "    checkpointing: {keep_last: 1}\n"
           "  baseline: true\n"
           "quantize: {types: [q8_0]}\n"
           "evaluate:\n"
           "  text: " + text_ + "\n"
           "  context: 32\n  chunks: " + std::to_string(chunks) + "\n  prompt_tokens: 8\n  decode_tokens: 4\n"
           "  classify: {data: intents.csv, labels: labels.json}\n"
           "  bleu: {data: references.jsonl, max_tokens: 8}\n";
  }
  PipelineConfig write_config(const std::string& text) const {
    std::ofstream(dir_ / "pipeline.yaml") << text;
    return load_pipeline_config((dir_ / "pipeline.yaml").string());
  }
  fs::path out() const { return dir_ / "out"; }
  nlohmann::json state() const { return nlohmann::json::parse(read_file(out() / "pipeline-state.json")); }

  std::string teacher_, text_;
  fs::path dir_;
};

TEST_F(Pipeline, RunsEveryStageAndARerunSkipsThem) {
  const PipelineConfig config = write_config(config_text());
  const PipelineResult first = run_pipeline(config, {});
  for (const char* row : {"| teacher |", "| student (distilled) |", "| student (hard labels only) |",
                          "| student (distilled) q8_0 |"})
    EXPECT_NE(first.report_markdown.find(row), std::string::npos) << row << "\n" << first.report_markdown;
  EXPECT_NE(first.report_markdown.find("accuracy"), std::string::npos);
  EXPECT_TRUE(fs::exists(out() / "report.html"));
  EXPECT_EQ(first.serve_model, (out() / "models" / "student-q8_0.gguf").string());
  const nlohmann::json s = state();
  for (const char* stage : {"teacher", "student", "baseline", "quantize", "evaluate", "report"})
    EXPECT_TRUE(s["stages"].contains(stage)) << stage;
  const auto rows = s["stages"]["evaluate"]["rows"];
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0]["kl_to_teacher"].get<double>(), 0.0);  // the teacher against itself
  EXPECT_GT(rows[1]["kl_to_teacher"].get<double>(), 0.0);
  EXPECT_LT(rows[3]["file_bytes"].get<double>(), rows[1]["file_bytes"].get<double>());  // q8_0 is smaller than f32
  EXPECT_EQ(rows[1]["classify"]["examples"].get<int64_t>(), 4);
  // Every student drafting for the teacher: an acceptance rate and a measured speed-up.
  EXPECT_FALSE(rows[0].contains("draft_for_teacher"));
  for (size_t i = 1; i < rows.size(); ++i) {
    const auto& draft = rows[i]["draft_for_teacher"];
    EXPECT_GE(draft["acceptance_rate"].get<double>(), 0.0);
    EXPECT_LE(draft["acceptance_rate"].get<double>(), 1.0);
    EXPECT_GE(draft["tokens_per_forward"].get<double>(), 1.0);
    EXPECT_GT(draft["teacher_alone_decode_tokens_per_second"].get<double>(), 0.0);
  }
  EXPECT_NE(first.report_markdown.find("drafting for the teacher"), std::string::npos) << first.report_markdown;
  // BLEU and chrF of every model against the held-out references, scored on both prompts.
  for (const auto& row : rows) {
    EXPECT_EQ(row["bleu"]["sentences"].get<int64_t>(), 2);
    EXPECT_GE(row["bleu"]["chrf"].get<double>(), 0.0);
    EXPECT_LE(row["bleu"]["bleu"].get<double>(), 100.0);
  }
  EXPECT_NE(first.report_markdown.find("BLEU change from the teacher"), std::string::npos) << first.report_markdown;

  const auto student_time = fs::last_write_time(s["stages"]["student"]["model"].get<std::string>());
  const PipelineResult second = run_pipeline(config, {});
  EXPECT_EQ(second.report_markdown, first.report_markdown);
  EXPECT_EQ(fs::last_write_time(state()["stages"]["student"]["model"].get<std::string>()), student_time);
}

TEST_F(Pipeline, FromRedoesThatStageAndLaterOnesOnly) {
  const PipelineConfig config = write_config(config_text());
  run_pipeline(config, {});
  const std::string student = state()["stages"]["student"]["model"];
  const auto student_time = fs::last_write_time(student);
  const double quantize_seconds = state()["stages"]["quantize"]["seconds"];
  fs::remove(out() / "models" / "student-q8_0.gguf");
  run_pipeline(config, {"quantize"});
  EXPECT_TRUE(fs::exists(out() / "models" / "student-q8_0.gguf"));
  EXPECT_EQ(fs::last_write_time(student), student_time);
  EXPECT_NE(state()["stages"]["quantize"]["seconds"].get<double>(), quantize_seconds);
  EXPECT_THROW(run_pipeline(config, {"quantise"}), Error);
}

TEST_F(Pipeline, AChangedConfigIsRefusedUntilFromSaysWhatToRedo) {
  run_pipeline(write_config(config_text(2)), {});
  // Comments and layout are not settings: the finished stages still stand.
  const std::string report = read_file(out() / "report.md");
  run_pipeline(write_config("# the same settings, commented\n" + config_text(2) + "\n\n"), {});
  EXPECT_EQ(read_file(out() / "report.md"), report);
  const PipelineConfig changed = write_config(config_text(3));
  try {
    run_pipeline(changed, {});
    FAIL() << "a changed config must not be mixed with stages made from the old one";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--from"), std::string::npos) << e.what();
  }
  run_pipeline(changed, {"evaluate"});
  EXPECT_EQ(state()["stages"]["evaluate"]["windows"].get<int64_t>(), 3);
}

// A pipeline killed in the middle of its student stage continues it from the stage's newest
// checkpoint and ends with the bytes of an uninterrupted pipeline.
TEST_F(Pipeline, KilledMidStageResumesToTheBytesOfAnUninterruptedRun) {
  auto with = [&](std::string text, const std::string& dir) {
    text.replace(text.find("dir: out"), 8, "dir: " + dir);
    text.replace(text.find("steps: 3"), 8, "steps: 8");
    text.replace(text.find("keep_last: 1}"), 13, "keep_last: 1, every: 2}");
    const fs::path path = dir_ / (dir + ".yaml");
    std::ofstream(path) << text;
    return path.string();
  };
  const std::string whole = with(config_text(), "whole"), killed = with(config_text(), "killed");
  const test::CommandResult done = test::run_command(test::retort_binary() + " pipeline " + whole + " 2>&1");
  ASSERT_EQ(done.status, 0) << done.output;

  const fs::path student = dir_ / "killed" / "student";
  ASSERT_TRUE(test::kill_retort_when({"pipeline", killed},
                                     [&] { return fs::exists(student / "step-00000004" / "trainer_state.json"); }))
      << "the pipeline ended before it could be killed";
  EXPECT_FALSE(fs::exists(student / "step-00000008"));
  const test::CommandResult resumed = test::run_command(test::retort_binary() + " pipeline " + killed + " 2>&1");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("teacher already done"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming from"), std::string::npos) << resumed.output;
  for (const char* file : {"model.safetensors", "optimizer.safetensors"})
    EXPECT_EQ(read_file(dir_ / "whole" / "student" / "step-00000008" / file), read_file(student / "step-00000008" / file))
        << file << " differs after kill and resume";
}

TEST_F(Pipeline, ConfigErrorsNameWhatIsWrong) {
  auto error_of = [&](const std::string& text) -> std::string {
    try {
      parse_pipeline_config(text, "p.yaml", dir_.string());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  const std::string good = config_text();
  EXPECT_NE(error_of(good + "colour: blue\n").find("unknown key 'colour'"), std::string::npos);
  EXPECT_NE(error_of("dir: x\nteacher: {model: a, train: {steps: 1}}\nstudent: {distill: {steps: 1}}\n"
                     "evaluate: {text: t}\n").find("not both"), std::string::npos);
  EXPECT_NE(error_of("dir: x\nteacher: {model: a}\nevaluate: {text: t}\n").find("student.distill"), std::string::npos);
  EXPECT_NE(error_of("dir: x\nteacher: {model: a}\nstudent: {distill: {steps: 1}}\n").find("evaluate.text"),
            std::string::npos);
  EXPECT_NE(error_of("dir: x\nteacher: {model: a}\nstudent: {distill: {steps: 1}}\nevaluate: {text: t, chunks: many}\n")
                .find("evaluate.chunks"), std::string::npos);
  EXPECT_NE(error_of("dir: x\nteacher: {model: a}\nstudent: {distill: {steps: 1}}\nquantize: {types: [q3_x]}\n"
                     "evaluate: {text: t}\n").find("q3_x"), std::string::npos);
  EXPECT_EQ(error_of(good), "");
}

}  // namespace
}  // namespace retort
