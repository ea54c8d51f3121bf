// Outputs never replace what is at their path (issue 17, class 3): a device, a directory or a FIFO
// is refused, and so is an output that is one of the command's inputs, through the one check
// every writer uses (util/output_path.h) and through the real binary's writing subcommands.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/output_path.h"

namespace retort {
namespace {

namespace fs = std::filesystem;

std::string quoted(const std::string& path) { return "'" + path + "'"; }

class OutputPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "retort-output-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  std::string read(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path dir_;
};

void expect_refused(const std::function<void()>& action, const std::string& fragment) {
  try {
    action();
    ADD_FAILURE() << "not refused; expected an error containing '" << fragment << "'";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::InvalidInput) << error.what();
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
  }
}

TEST_F(OutputPathTest, NewPathsAndRegularFilesAreAccepted) {
  EXPECT_NO_THROW(check_output_file((dir_ / "new.gguf").string(), {write("in.txt", "x")}));
  EXPECT_NO_THROW(check_output_file(write("old.gguf", "old"), {(dir_ / "in.txt").string()}));
  EXPECT_NO_THROW(check_output_directory((dir_ / "new-dir").string(), ExistingContents::Refuse));
  fs::create_directory(dir_ / "empty");
  EXPECT_NO_THROW(check_output_directory((dir_ / "empty").string(), ExistingContents::Refuse));
}

TEST_F(OutputPathTest, DevicesDirectoriesAndFifosAreRefused) {
  if (fs::exists("/dev/full")) expect_refused([] { check_output_file("/dev/full"); }, "a character device");
  expect_refused([&] { check_output_file(dir_.string()); }, "a directory");
  const std::string fifo = (dir_ / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_refused([&] { check_output_file(fifo); }, "a FIFO");
  expect_refused([&] { check_output_directory(write("file", "x"), ExistingContents::Allow); }, "not a directory");
}

// Every atomic write goes through the check: the rename would otherwise replace the node.
TEST_F(OutputPathTest, AtomicWritesLeaveADeviceOrDirectoryInPlace) {
  if (fs::exists("/dev/full")) {
    expect_refused([] { write_file_atomically("/dev/full", "x"); }, "/dev/full");
    EXPECT_TRUE(fs::is_character_file("/dev/full"));
  }
  fs::create_directory(dir_ / "empty");
  expect_refused([&] { write_file_atomically((dir_ / "empty").string(), "x"); }, "a directory");
  EXPECT_TRUE(fs::is_directory(dir_ / "empty"));
}

TEST_F(OutputPathTest, AnInputIsRefusedUnderAnyName) {
  const std::string input = write("model.safetensors", "weights");
  expect_refused([&] { check_output_file(input, {input}); }, "is the input");
  fs::create_hard_link(input, dir_ / "link.safetensors");
  expect_refused([&] { check_output_file((dir_ / "link.safetensors").string(), {input}); }, "is the input");
  fs::create_symlink(input, dir_ / "symlink");
  expect_refused([&] { check_output_file((dir_ / "symlink").string(), {input}); }, "is the input");
  // An input directory stands for its files: `convert M -o M/model.safetensors`.
  expect_refused([&] { check_output_file(input, {dir_.string()}); }, "one of the input files");
  expect_refused([&] { check_output_directory(dir_.string(), ExistingContents::Allow, {dir_.string()}); },
                 "is the input");
  EXPECT_EQ(read(input), "weights");
}

TEST_F(OutputPathTest, ANonEmptyDirectoryIsRefusedWhereContentsWouldMix) {
  write("config.json", "{}");
  expect_refused([&] { check_output_directory(dir_.string(), ExistingContents::Refuse); }, "is not empty");
  EXPECT_NO_THROW(check_output_directory(dir_.string(), ExistingContents::Allow));
}

// The subcommands that write, run as a user would.
TEST_F(OutputPathTest, CliWritersRefuseDevicesInputsAndNonEmptyDirectories) {
  const std::string bin = quoted(test::retort_binary());
  const std::string config = write("config.json", R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
    "max_position_embeddings": 128, "tie_word_embeddings": true, "hidden_act": "silu",
    "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2})");
  auto init = test::run_command(bin + " init --config " + quoted(config) + " --out " + quoted(dir_.string()) + " 2>&1");
  EXPECT_EQ(init.status, 1) << init.output;
  EXPECT_NE(init.output.find("is not empty"), std::string::npos) << init.output;

  // A model no disk holds (about 400 PB as bf16) is refused with the numbers before anything is made.
  const std::string huge = write("huge.json", R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "hidden_size": 16384, "intermediate_size": 1048576, "num_hidden_layers": 4096, "num_attention_heads": 128,
    "num_key_value_heads": 8, "vocab_size": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
    "max_position_embeddings": 128, "tie_word_embeddings": true, "hidden_act": "silu",
    "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2})");
  init = test::run_command(bin + " init --config " + quoted(huge) + " --out " + quoted((dir_ / "huge").string()) + " 2>&1");
  EXPECT_EQ(init.status, 1) << init.output;
  EXPECT_NE(init.output.find("GB free"), std::string::npos) << init.output;
  EXPECT_FALSE(fs::exists(dir_ / "huge"));

  const std::string model = (dir_ / "model").string();
  init = test::run_command(bin + " init --config " + quoted(config) + " --out " + quoted(model) + " 2>&1");
  ASSERT_EQ(init.status, 0) << init.output;
  const std::string weights = model + "/model.safetensors";
  ASSERT_TRUE(fs::exists(weights)) << init.output;
  const auto size = fs::file_size(weights);
  auto convert = test::run_command(bin + " convert " + quoted(model) + " -o " + quoted(weights) + " 2>&1");
  EXPECT_EQ(convert.status, 1) << convert.output;
  EXPECT_NE(convert.output.find("one of the input files"), std::string::npos) << convert.output;
  EXPECT_EQ(fs::file_size(weights), size);
  if (fs::exists("/dev/full")) {
    convert = test::run_command(bin + " convert " + quoted(model) + " -o /dev/full 2>&1");
    EXPECT_EQ(convert.status, 1) << convert.output;
    EXPECT_NE(convert.output.find("a character device"), std::string::npos) << convert.output;
    EXPECT_TRUE(fs::is_character_file("/dev/full"));
  }
  const std::string tokens = write("tokens.txt", "1 2 3");
  auto logits = test::run_command(bin + " logits " + quoted(model) + " --tokens " + quoted(tokens) + " --out " +
                                  quoted(tokens) + " 2>&1");
  EXPECT_EQ(logits.status, 1) << logits.output;
  EXPECT_NE(logits.output.find("is the input"), std::string::npos) << logits.output;
  EXPECT_EQ(read(tokens), "1 2 3");
}

}  // namespace
}  // namespace retort
