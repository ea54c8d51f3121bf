// convert and quantize check what they read as `run` would before writing anything (issue 17,
// class 2): a config with fewer layers than the checkpoint, a malformed tokenizer.json, and GGUF
// metadata run refuses (hidden size 0, a block count of 2^32 - 1) are clear errors, exit 1, and no
// output file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "test_support.h"

namespace retort {
namespace {

namespace fs = std::filesystem;

class ConvertValidation : public ::testing::Test {
 protected:
  void SetUp() override {
    fixture_ = test::shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(fixture_, "fixture tiny-r1-qwen");
    std::string pattern = (fs::temp_directory_path() / "retort-convert-checks-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // A writable copy of the fixture checkpoint.
  fs::path copy_fixture(const std::string& name) {
    const fs::path copy = dir_ / name;
    fs::copy(fixture_, copy, fs::copy_options::recursive);
    for (const auto& entry : fs::directory_iterator(copy))
      fs::permissions(entry.path(), fs::perms::owner_write, fs::perm_options::add);
    return copy;
  }
  test::CommandResult retort(const std::string& arguments) {
    return test::run_command("'" + test::retort_binary() + "' " + arguments + " 2>&1");
  }
  // `source` with one metadata key's u32 value replaced.
  void write_gguf_with(const std::string& source, const std::string& target, const std::string& key, uint32_t value) {
    const GgufFile input(source);
    GgufWriter writer;
    for (const auto& [name, entry] : input.metadata()) {
      if (name == "general.alignment") continue;
      if (name == key) writer.add_u32(name, value);
      else writer.add_metadata(name, entry);
    }
    for (const GgufTensorInfo& info : input.tensor_infos()) {
      const uint8_t* data = input.tensor_data(info);
      const size_t size = info.size_bytes;
      writer.add_tensor(info.name, info.type, info.dims, [data, size](std::vector<uint8_t>& out) {
        out.assign(data, data + size);
      });
    }
    writer.write(target);
  }

  std::string fixture_;
  fs::path dir_;
};

TEST_F(ConvertValidation, AConfigWithFewerLayersThanTheCheckpointIsRefused) {
  const fs::path model = copy_fixture("short");
  nlohmann::json config = nlohmann::json::parse(std::ifstream(model / "config.json"));
  config["num_hidden_layers"] = config["num_hidden_layers"].get<int>() - 1;
  std::ofstream(model / "config.json") << config.dump(2);
  const auto result = retort("convert '" + model.string() + "' -o '" + (dir_ / "out.gguf").string() + "'");
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("silently drop layers"), std::string::npos) << result.output;
  EXPECT_FALSE(fs::exists(dir_ / "out.gguf"));
}

TEST_F(ConvertValidation, AMalformedTokenizerIsRefusedBeforeWriting) {
  const fs::path model = copy_fixture("bad-tokenizer");
  for (const std::string& text : {std::string("{}"), std::string(R"({"model": {"type": "BPE", "vocab": 5}})"),
                                  std::string(R"({"model": {"type": "BPE", "vocab": {}, "merges": [1]}})")}) {
    std::ofstream(model / "tokenizer.json") << text;
    const auto result = retort("convert '" + model.string() + "' -o '" + (dir_ / "out.gguf").string() + "'");
    EXPECT_EQ(result.status, 1) << text << "\n" << result.output;
    EXPECT_EQ(result.output.find("internal"), std::string::npos) << result.output;
    EXPECT_FALSE(fs::exists(dir_ / "out.gguf"));
  }
}

TEST_F(ConvertValidation, QuantizeRefusesAGgufRunWouldRefuse) {
  const std::string good = (dir_ / "good.gguf").string();
  auto result = retort("convert '" + fixture_ + "' -o '" + good + "' --type f32");
  ASSERT_EQ(result.status, 0) << result.output;
  for (const auto& [key, value] : std::vector<std::pair<std::string, uint32_t>>{
           {"qwen2.embedding_length", 0}, {"qwen2.block_count", 4294967295u}}) {
    const std::string bad = (dir_ / "bad.gguf").string();
    write_gguf_with(good, bad, key, value);
    const std::string out = (dir_ / "out.gguf").string();
    result = retort("quantize '" + bad + "' '" + out + "' --type q8_0");
    EXPECT_EQ(result.status, 1) << key << "\n" << result.output;
    EXPECT_FALSE(fs::exists(out)) << key;
  }
}

}  // namespace
}  // namespace retort
