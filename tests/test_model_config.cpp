// HF config.json → ModelConfig: the fixtures, the real 1.5B config, every shipped config under
// configs/models, the inverse to_hf_config, and one test per kind of bad config.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/model_config.h"
#include "model/tensor_table.h"
#include "test_support.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json qwen_fixture_json() {
  return json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 192,
    "intermediate_size": 512, "num_hidden_layers": 3, "num_attention_heads": 12,
    "num_key_value_heads": 2, "vocab_size": 512, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
    "max_position_embeddings": 4096, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "bos_token_id": 510, "eos_token_id": 511, "use_sliding_window": false, "sliding_window": 4096,
    "max_window_layers": 3})");
}

// Expects parse + validate of `config` to fail with `kind`, naming the source and each fragment.
void expect_config_error(const json& config, ErrorKind kind, std::initializer_list<std::string> fragments) {
  try {
    validate_model_config(parse_hf_config(config, "my/config.json"), "my/config.json");
    FAIL() << "should have been rejected: " << config.dump();
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), kind) << error.what();
    const std::string message = error.what();
    EXPECT_NE(message.find("my/config.json"), std::string::npos) << message;
    for (const auto& fragment : fragments) {
      EXPECT_NE(message.find(fragment), std::string::npos) << "lacks '" << fragment << "': " << message;
    }
  }
}

int64_t sum_of_expected_tensor_sizes(const ModelConfig& config) {
  int64_t total = 0;
  for (const ExpectedTensor& tensor : expected_tensors(config)) {
    int64_t elements = 1;
    for (int64_t dimension : tensor.shape) elements *= dimension;
    total += elements;
  }
  return total;
}

TEST(ModelConfig, QwenFixture) {
  const auto path = test::shared_path("fixtures/tiny-r1-qwen/config.json");
  RETORT_REQUIRE_PATH(path, "tiny-r1-qwen fixture");
  const ModelConfig config = load_hf_config(path);
  EXPECT_EQ(config.arch, Architecture::Qwen2);
  EXPECT_EQ(config.hf_architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(config.hidden_size, 192);
  EXPECT_EQ(config.intermediate_size, 512);
  EXPECT_EQ(config.num_layers, 3);
  EXPECT_EQ(config.num_heads, 12);
  EXPECT_EQ(config.num_kv_heads, 2);
  EXPECT_EQ(config.head_dim, 16);
  EXPECT_EQ(config.vocab_size, 512);
  EXPECT_EQ(config.max_positions, 4096);
  EXPECT_DOUBLE_EQ(config.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(config.rope.theta, 10000.0);
  EXPECT_EQ(config.rope.scaling, RopeScaling::None);
  EXPECT_TRUE(config.attention_bias);
  EXPECT_FALSE(config.tie_word_embeddings);
  EXPECT_EQ(config.bos_token_ids, std::vector<int64_t>{510});
  EXPECT_EQ(config.eos_token_ids, std::vector<int64_t>{511});
  EXPECT_EQ(config.sliding_window, 4096);
  EXPECT_EQ(config.torch_dtype, "bfloat16");
}

TEST(ModelConfig, LlamaFixtureWithLlama3RopeScaling) {
  const auto path = test::shared_path("fixtures/tiny-r1-llama/config.json");
  RETORT_REQUIRE_PATH(path, "tiny-r1-llama fixture");
  const ModelConfig config = load_hf_config(path);
  EXPECT_EQ(config.arch, Architecture::Llama);
  EXPECT_EQ(architecture_name(config.arch), "llama");
  EXPECT_EQ(config.hidden_size, 128);
  EXPECT_EQ(config.num_heads, 8);
  EXPECT_EQ(config.num_kv_heads, 2);
  EXPECT_EQ(config.head_dim, 16);
  EXPECT_FALSE(config.attention_bias);
  EXPECT_DOUBLE_EQ(config.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(config.rope.theta, 500000.0);
  EXPECT_EQ(config.rope.scaling, RopeScaling::Llama3);
  EXPECT_DOUBLE_EQ(config.rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(config.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(config.rope.high_freq_factor, 4.0);
  EXPECT_EQ(config.rope.original_max_positions, 8192);
}

TEST(ModelConfig, RealDeepSeekR1DistillQwen15B) {
  const auto path = test::shared_path("data/r1-distill-qwen/config-1.5b.json");
  RETORT_REQUIRE_PATH(path, "DeepSeek-R1-Distill-Qwen-1.5B config");
  const ModelConfig config = load_hf_config(path);
  EXPECT_EQ(config.hidden_size, 1536);
  EXPECT_EQ(config.num_layers, 28);
  EXPECT_EQ(config.head_dim, 128);
  EXPECT_EQ(config.vocab_size, 151936);
  EXPECT_EQ(config.max_window_layers, 21);
  // The published size: 1.78 B parameters (untied head).
  EXPECT_EQ(config.parameter_count(), 1'777'088'000);
}

TEST(ModelConfig, ParameterCountAgreesWithTheTensorTable) {
  for (const auto* fixture : {"fixtures/tiny-r1-qwen/config.json", "fixtures/tiny-r1-llama/config.json"}) {
    const auto path = test::shared_path(fixture);
    RETORT_REQUIRE_PATH(path, fixture);
    const ModelConfig config = load_hf_config(path);
    EXPECT_EQ(config.parameter_count(), sum_of_expected_tensor_sizes(config)) << fixture;
  }
}

// Every config we ship parses, validates, agrees with the tensor table and survives to_hf_config.
TEST(ModelConfig, EveryShippedConfigParsesValidatesAndRoundTrips) {
  const fs::path models = fs::path(test::source_dir()) / "configs" / "models";
  ASSERT_TRUE(fs::is_directory(models));
  int count = 0;
  for (const auto& entry : fs::directory_iterator(models)) {
    if (entry.path().extension() != ".json") continue;
    ++count;
    SCOPED_TRACE(entry.path().string());
    const ModelConfig config = load_hf_config(entry.path().string());
    EXPECT_EQ(config.parameter_count(), sum_of_expected_tensor_sizes(config));
    const ModelConfig again = parse_hf_config(to_hf_config(config), "round trip");
    EXPECT_EQ(to_hf_config(again), to_hf_config(config));
  }
  EXPECT_GE(count, 7);
}

TEST(ModelConfig, ShippedConfigsHaveThePublishedSizes) {
  const fs::path models = fs::path(test::source_dir()) / "configs" / "models";
  auto load = [&](const char* name) { return load_hf_config((models / name).string()); };
  // The parameter counts the model cards state (7.62B, 14.8B, 32.8B, 8.03B, 70.6B, 494M).
  EXPECT_EQ(load("DeepSeek-R1-Distill-Qwen-1.5B.json").parameter_count(), 1'777'088'000);
  EXPECT_EQ(load("DeepSeek-R1-Distill-Qwen-7B.json").parameter_count(), 7'615'616'512);
  EXPECT_EQ(load("DeepSeek-R1-Distill-Qwen-14B.json").parameter_count(), 14'770'033'664);
  EXPECT_EQ(load("DeepSeek-R1-Distill-Qwen-32B.json").parameter_count(), 32'763'876'352);
  EXPECT_EQ(load("DeepSeek-R1-Distill-Llama-8B.json").parameter_count(), 8'030'261'248);
  EXPECT_EQ(load("DeepSeek-R1-Distill-Llama-70B.json").parameter_count(), 70'553'706'496);
  EXPECT_EQ(load("Qwen2.5-0.5B.json").parameter_count(), 494'032'768);
  const ModelConfig llama8b = load("DeepSeek-R1-Distill-Llama-8B.json");
  EXPECT_EQ(llama8b.rope.scaling, RopeScaling::Llama3);
  EXPECT_EQ(llama8b.bos_token_ids, std::vector<int64_t>{128000});
  EXPECT_TRUE(load("Qwen2.5-0.5B.json").tie_word_embeddings);
}

// configs/models/DeepSeek-R1-Distill-Qwen-1.5B.json carries every fact of the published config.
TEST(ModelConfig, ShippedQwen15BMatchesThePublishedConfig) {
  const auto published_path = test::shared_path("data/r1-distill-qwen/config-1.5b.json");
  RETORT_REQUIRE_PATH(published_path, "DeepSeek-R1-Distill-Qwen-1.5B config");
  const json published = json::parse(read_text_file(published_path));
  const json shipped = json::parse(read_text_file(
      (fs::path(test::source_dir()) / "configs/models/DeepSeek-R1-Distill-Qwen-1.5B.json").string()));
  for (const auto& [key, value] : published.items()) {
    ASSERT_TRUE(shipped.contains(key)) << key;
    EXPECT_EQ(shipped.at(key), value) << key;
  }
}

TEST(ModelConfig, ToHfConfigRoundTripsEveryField) {
  ModelConfig config = parse_hf_config(qwen_fixture_json(), "qwen");
  config.arch = Architecture::Llama;
  config.hf_architecture = "LlamaForCausalLM";
  config.attention_bias = true;
  config.head_dim = 32;  // differs from hidden/heads, so it must be written out
  config.rope.theta = 123.0;
  config.rope.scaling = RopeScaling::Llama3;
  config.rope.factor = 8.0;
  config.bos_token_ids = {1};
  config.eos_token_ids = {2, 3};
  config.tie_word_embeddings = true;
  config.torch_dtype = "float32";
  const json hf = to_hf_config(config);
  EXPECT_EQ(hf["model_type"], "llama");
  EXPECT_EQ(hf["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(hf["eos_token_id"], json({2, 3}));
  const ModelConfig back = parse_hf_config(hf, "round trip");
  EXPECT_EQ(back.arch, config.arch);
  EXPECT_EQ(back.head_dim, 32);
  EXPECT_TRUE(back.attention_bias);
  EXPECT_EQ(back.rope.scaling, RopeScaling::Llama3);
  EXPECT_DOUBLE_EQ(back.rope.theta, 123.0);
  EXPECT_EQ(back.bos_token_ids, config.bos_token_ids);
  EXPECT_EQ(back.eos_token_ids, config.eos_token_ids);
  EXPECT_TRUE(back.tie_word_embeddings);
  EXPECT_EQ(back.torch_dtype, "float32");
  EXPECT_EQ(to_hf_config(back), hf);
}

TEST(ModelConfig, DefaultsAndAlternativeSpellings) {
  json config = qwen_fixture_json();
  config.erase("num_key_value_heads");
  config.erase("architectures");  // model_type alone identifies the family
  config["eos_token_id"] = {7, 8};
  config["bos_token_id"] = nullptr;
  const ModelConfig parsed = parse_hf_config(config, "c");
  EXPECT_EQ(parsed.num_kv_heads, 12);
  EXPECT_EQ(parsed.hf_architecture, "Qwen2ForCausalLM");
  EXPECT_TRUE(parsed.bos_token_ids.empty());
  EXPECT_EQ(parsed.eos_token_ids, (std::vector<int64_t>{7, 8}));

  json llama = qwen_fixture_json();
  llama["architectures"] = {"LlamaForCausalLM"};
  llama["model_type"] = "llama";
  llama["rope_scaling"] = {{"type", "llama3"}, {"factor", 2.0}};  // the older key
  EXPECT_FALSE(parse_hf_config(llama, "c").attention_bias);
  EXPECT_DOUBLE_EQ(parse_hf_config(llama, "c").rope.factor, 2.0);
  llama["rope_scaling"] = nullptr;
  EXPECT_EQ(parse_hf_config(llama, "c").rope.scaling, RopeScaling::None);
}

// ---- bad configs: one test each, each message naming the file and the key ----

TEST(ModelConfig, MissingFile) {
  try {
    load_hf_config("/nonexistent/dir/config.json");
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::NotFound);
    EXPECT_NE(std::string(error.what()).find("/nonexistent/dir/config.json"), std::string::npos);
  }
}

TEST(ModelConfig, InvalidJson) {
  std::string dir_pattern = (fs::temp_directory_path() / "retort-config-XXXXXX").string();
  ASSERT_NE(::mkdtemp(dir_pattern.data()), nullptr);
  const std::string path = dir_pattern + "/config.json";
  std::ofstream(path) << R"({"hidden_size": 12,)";
  try {
    load_hf_config(path);
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::InvalidInput);
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("not valid JSON"), std::string::npos) << error.what();
  }
  fs::remove_all(dir_pattern);
}

TEST(ModelConfig, UnknownArchitectureListsTheSupportedOnes) {
  json config = qwen_fixture_json();
  config["architectures"] = {"MistralForCausalLM"};
  config["model_type"] = "mistral";
  expect_config_error(config, ErrorKind::Unsupported,
                      {"MistralForCausalLM", "Qwen2ForCausalLM", "LlamaForCausalLM"});
}

TEST(ModelConfig, ArchitecturesAndModelTypeDisagree) {
  json config = qwen_fixture_json();
  config["model_type"] = "llama";
  expect_config_error(config, ErrorKind::InvalidInput, {"architectures", "model_type"});
}

TEST(ModelConfig, WrongTypeForAKey) {
  json config = qwen_fixture_json();
  config["hidden_size"] = "192";
  expect_config_error(config, ErrorKind::InvalidInput, {"'hidden_size'", "integer", "\"192\""});
  config = qwen_fixture_json();
  config["tie_word_embeddings"] = 0;
  expect_config_error(config, ErrorKind::InvalidInput, {"'tie_word_embeddings'", "true or false"});
  config = qwen_fixture_json();
  config["rope_theta"] = "10000";
  expect_config_error(config, ErrorKind::InvalidInput, {"'rope_theta'", "number"});
  config = qwen_fixture_json();
  config["num_hidden_layers"] = 2.5;
  expect_config_error(config, ErrorKind::InvalidInput, {"'num_hidden_layers'", "2.5"});
  config = qwen_fixture_json();
  config["eos_token_id"] = {1, "two"};
  expect_config_error(config, ErrorKind::InvalidInput, {"'eos_token_id'"});
  config = qwen_fixture_json();
  config["rope_scaling"] = 8;
  expect_config_error(config, ErrorKind::InvalidInput, {"'rope_scaling'", "object"});
}

TEST(ModelConfig, MissingRequiredKey) {
  json config = qwen_fixture_json();
  config.erase("intermediate_size");
  expect_config_error(config, ErrorKind::InvalidInput, {"'intermediate_size'"});
}

TEST(ModelConfig, UnsupportedRopeScalingType) {
  json config = qwen_fixture_json();
  config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_config_error(config, ErrorKind::Unsupported, {"yarn", "llama3"});
}

TEST(ModelConfig, HeadsNotDivisibleByKvHeads) {
  json config = qwen_fixture_json();
  config["num_key_value_heads"] = 5;
  expect_config_error(config, ErrorKind::InvalidInput, {"num_key_value_heads", "12", "5"});
}

TEST(ModelConfig, NonPositiveOrAbsurdSizes) {
  for (const auto* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size"}) {
    json config = qwen_fixture_json();
    config[key] = 0;
    expect_config_error(config, ErrorKind::InvalidInput, {key});
    config[key] = int64_t{1} << 40;
    expect_config_error(config, ErrorKind::InvalidInput, {key});
  }
}

TEST(ModelConfig, OddHeadDim) {
  json config = qwen_fixture_json();
  config["head_dim"] = 15;
  expect_config_error(config, ErrorKind::InvalidInput, {"head_dim", "15"});
}

TEST(ModelConfig, HiddenNotDivisibleByHeadsWithoutHeadDim) {
  json config = qwen_fixture_json();
  config["num_attention_heads"] = 7;
  config["num_key_value_heads"] = 7;
  expect_config_error(config, ErrorKind::InvalidInput, {"hidden_size", "num_attention_heads"});
}

TEST(ModelConfig, TokenIdOutsideTheVocabulary) {
  json config = qwen_fixture_json();
  config["eos_token_id"] = 512;
  expect_config_error(config, ErrorKind::InvalidInput, {"eos_token_id", "512"});
}

TEST(ModelConfig, UnsupportedActivationOrMlpBias) {
  json config = qwen_fixture_json();
  config["hidden_act"] = "gelu";
  expect_config_error(config, ErrorKind::Unsupported, {"hidden_act", "gelu"});
  config = qwen_fixture_json();
  config["mlp_bias"] = true;
  expect_config_error(config, ErrorKind::Unsupported, {"mlp_bias"});
}

TEST(ModelConfig, ConfigThatIsNotAnObject) {
  expect_config_error(json::array({1, 2}), ErrorKind::InvalidInput, {"JSON object"});
}

}  // namespace
}  // namespace retort
