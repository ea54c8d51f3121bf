// `retort info`: runs the real binary on the fixtures and on broken copies of them in a temp dir.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/model_config.h"
#include "io/safetensors.h"
#include "test_support.h"

namespace retort {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string quoted(const std::string& path) { return "'" + path + "'"; }

test::CommandResult run_info(const std::string& arguments) {
  return test::run_command(quoted(test::retort_binary()) + " info " + arguments + " 2>&1");
}

json run_info_json(const std::string& dir, int expected_status) {
  auto result = test::run_command(quoted(test::retort_binary()) + " info --json " + quoted(dir) + " 2>/dev/null");
  EXPECT_EQ(result.status, expected_status) << result.output;
  return json::parse(result.output);
}

class InfoCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "retort-info-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
};

TEST_F(InfoCliTest, DescribesTheQwenFixture) {
  const auto fixture = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(fixture, "tiny-r1-qwen fixture");
  const auto result = run_info(quoted(fixture));
  EXPECT_EQ(result.status, 0) << result.output;
  const int64_t parameters = load_hf_config(fixture + "/config.json").parameter_count();
  for (const std::string& fragment : {std::string("qwen2 (Qwen2ForCausalLM)"), std::to_string(parameters),
                                     std::string("bf16"), std::string("model.layers.2.self_attn.q_proj.bias"),
                                     std::string("num_kv_heads"), std::string("ok: all")}) {
    EXPECT_NE(result.output.find(fragment), std::string::npos) << "lacks " << fragment << ":\n" << result.output;
  }
}

TEST_F(InfoCliTest, JsonForTheLlamaFixture) {
  const auto fixture = test::shared_path("fixtures/tiny-r1-llama");
  RETORT_REQUIRE_PATH(fixture, "tiny-r1-llama fixture");
  const json report = run_info_json(fixture, 0);
  const ModelConfig config = load_hf_config(fixture + "/config.json");
  EXPECT_EQ(report["architecture"], "llama");
  EXPECT_EQ(report["parameter_count"], config.parameter_count());
  EXPECT_EQ(report["config"]["rope_scaling"]["type"], "llama3");
  EXPECT_EQ(report["size_on_disk_bytes"], fs::file_size(fixture + "/model.safetensors"));
  EXPECT_EQ(report["dtypes"]["bf16"], report["tensors"].size());
  EXPECT_TRUE(report["missing"].empty());
  EXPECT_TRUE(report["shape_mismatches"].empty());
  EXPECT_TRUE(report["ok"].get<bool>());
  EXPECT_EQ(report["tensors"][0]["name"], "model.embed_tokens.weight");
}

// A copy of the Qwen fixture with one tensor dropped, one reshaped and one added.
TEST_F(InfoCliTest, ReportsMissingMisshapenAndExtraTensorsAndFails) {
  const auto fixture = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(fixture, "tiny-r1-qwen fixture");
  fs::copy_file(fixture + "/config.json", dir_ / "config.json");
  {
    auto original = Checkpoint::open_directory(fixture);
    std::vector<TensorToWrite> tensors;
    for (const std::string& name : original->names()) {
      if (name == "model.layers.1.mlp.up_proj.weight") continue;
      const TensorView& view = original->get(name);
      auto shape = view.shape;
      if (name == "model.norm.weight") shape = {96, 2};
      tensors.push_back({name, view.dtype, shape, {view.data, view.size_bytes}});
    }
    const std::vector<uint8_t> extra(8, 0);
    tensors.push_back({"model.rotary_emb.inv_freq", DType::F32, {2}, extra});
    write_safetensors_checkpoint(dir_.string(), tensors, uint64_t{1} << 30);
  }

  const auto text = run_info(quoted(dir_.string()));
  EXPECT_EQ(text.status, 1) << text.output;
  for (const std::string fragment : {"missing   model.layers.1.mlp.up_proj.weight (expected [512, 192])",
                                     "shape     model.norm.weight is [96, 2], config.json implies [192]",
                                     "extra     model.rotary_emb.inv_freq", "1 missing, 1 misshapen"}) {
    EXPECT_NE(text.output.find(fragment), std::string::npos) << "lacks " << fragment << ":\n" << text.output;
  }

  const json report = run_info_json(dir_.string(), 1);
  EXPECT_FALSE(report["ok"].get<bool>());
  ASSERT_EQ(report["missing"].size(), 1u);
  EXPECT_EQ(report["missing"][0]["name"], "model.layers.1.mlp.up_proj.weight");
  ASSERT_EQ(report["shape_mismatches"].size(), 1u);
  EXPECT_EQ(report["shape_mismatches"][0]["expected_shape"], json({192}));
  EXPECT_EQ(report["extra"], json({"model.rotary_emb.inv_freq"}));
}

TEST_F(InfoCliTest, TruncatedWeightsGiveOneErrorLineNamingTheFile) {
  const auto fixture = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(fixture, "tiny-r1-qwen fixture");
  fs::copy_file(fixture + "/config.json", dir_ / "config.json");
  fs::copy_file(fixture + "/model.safetensors", dir_ / "model.safetensors");
  fs::resize_file(dir_ / "model.safetensors", 1000);
  const auto result = run_info(quoted(dir_.string()));
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_EQ(result.output.rfind("error: ", 0), 0u) << result.output;
  EXPECT_NE(result.output.find((dir_ / "model.safetensors").string()), std::string::npos) << result.output;
}

// run would refuse a checkpoint whose tokenizer.json it cannot load: so does info, naming the file;
// a good one is reported with its size.
TEST_F(InfoCliTest, ChecksTheTokenizerAsRunDoes) {
  const auto fixture = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(fixture, "tiny-r1-qwen fixture");
  for (const char* file : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(fixture + "/" + file, dir_ / file);
  const auto good = run_info(quoted(dir_.string()));
  EXPECT_EQ(good.status, 0) << good.output;
  EXPECT_NE(good.output.find("512 tokens"), std::string::npos) << good.output;
  std::ofstream(dir_ / "tokenizer.json", std::ios::trunc) << R"({"model": {"type": "BPE", "vocab": 7}})";
  const auto bad = run_info(quoted(dir_.string()));
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find((dir_ / "tokenizer.json").string() + "' cannot be used"), std::string::npos) << bad.output;
  const json report = run_info_json(dir_.string(), 1);
  EXPECT_FALSE(report["ok"].get<bool>());
  EXPECT_TRUE(report["tokenizer"].contains("error"));
}

TEST_F(InfoCliTest, DirectoryWithoutConfigSaysWhatIsMissing) {
  const auto result = run_info(quoted(dir_.string()));
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("no config.json"), std::string::npos) << result.output;
}

TEST_F(InfoCliTest, BrokenConfigNamesTheKey) {
  const auto fixture = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(fixture, "tiny-r1-qwen fixture");
  fs::copy_file(fixture + "/model.safetensors", dir_ / "model.safetensors");
  std::ofstream(dir_ / "config.json") << R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": "big"})";
  const auto result = run_info(quoted(dir_.string()));
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("'hidden_size'"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace retort
