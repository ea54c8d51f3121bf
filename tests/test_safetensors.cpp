// safetensors: reading the fixtures, write → read round trips (single file and sharded), and one
// test per kind of broken input, each checking that the message names the file and the tensor.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "test_support.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A fresh directory per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "retort-safetensors-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A file with an 8-byte length, `header` verbatim and `data_bytes` bytes of data.
  std::string write_raw(const std::string& name, const std::string& header, size_t data_bytes,
                        std::optional<uint64_t> length_field = std::nullopt) {
    std::ofstream out(path(name), std::ios::binary);
    uint64_t length = length_field.value_or(header.size());
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((length >> (8 * i)) & 0xff));
    out << header << std::string(data_bytes, '\x01');
    return path(name);
  }

  fs::path dir_;
};

// Expects opening `file` to fail with `kind` and a message containing each of `fragments`.
void expect_open_error(const std::string& file, ErrorKind kind, std::initializer_list<std::string> fragments) {
  try {
    SafetensorsFile opened(file);
    FAIL() << "opening " << file << " should have failed";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), kind) << error.what();
    for (const auto& fragment : fragments) {
      EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos)
          << "message lacks '" << fragment << "': " << error.what();
    }
  }
}

std::vector<uint8_t> pattern_bytes(size_t count, uint8_t seed) {
  std::vector<uint8_t> bytes(count);
  for (size_t i = 0; i < count; ++i) bytes[i] = static_cast<uint8_t>(seed + i * 31);
  return bytes;
}

TEST_F(SafetensorsTest, ReadsTheQwenFixtureAsBf16WithExpectedShapes) {
  const auto file = test::shared_path("fixtures/tiny-r1-qwen/model.safetensors");
  RETORT_REQUIRE_PATH(file, "tiny-r1-qwen fixture");
  SafetensorsFile weights(file);
  ASSERT_FALSE(weights.tensors().empty());
  bool saw_embedding = false;
  for (const TensorView& view : weights.tensors()) {
    EXPECT_EQ(view.dtype, DType::BF16) << view.name;
    EXPECT_EQ(view.size_bytes, static_cast<size_t>(view.element_count()) * 2) << view.name;
    EXPECT_EQ(view.file, file);
    if (view.name == "model.embed_tokens.weight") {
      saw_embedding = true;
      EXPECT_EQ(view.shape, (std::vector<int64_t>{512, 192}));
    }
  }
  EXPECT_TRUE(saw_embedding);
}

TEST_F(SafetensorsTest, ViewsPointIntoTheBufferWithoutCopying) {
  const uint8_t values[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  write_safetensors(path("a.safetensors"), {{"x", DType::F32, {2}, values}});
  MappedFile mapped(path("a.safetensors"));
  auto views = SafetensorsFile::parse(mapped.bytes(), "a.safetensors", nullptr);
  ASSERT_EQ(views.size(), 1u);
  EXPECT_EQ(views[0].data, mapped.data() + mapped.size() - 8);
  EXPECT_EQ(std::memcmp(views[0].data, values, 8), 0);
}

TEST_F(SafetensorsTest, WriteThenReadGivesIdenticalTensorsInOrder) {
  const auto f32 = pattern_bytes(3 * 5 * 4, 1);
  const auto bf16 = pattern_bytes(7 * 2, 2);
  const auto f16 = pattern_bytes(4 * 2, 3);
  const auto i64 = pattern_bytes(8, 4);
  std::vector<TensorToWrite> tensors = {
      {"zeta.weight", DType::F32, {3, 5}, f32},
      {"alpha.bias", DType::BF16, {7}, bf16},
      {"half", DType::F16, {2, 2}, f16},
      {"scalar", DType::I64, {}, i64},
      {"empty", DType::F32, {0, 4}, {}},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "round trip"}};
  write_safetensors(path("model.safetensors"), tensors, metadata);

  SafetensorsFile read_back(path("model.safetensors"));
  EXPECT_EQ(read_back.metadata(), metadata);
  ASSERT_EQ(read_back.tensors().size(), tensors.size());
  // Data is laid out in the given order, and views come back in data order.
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorView& view = read_back.tensors()[i];
    EXPECT_EQ(view.name, tensors[i].name);
    EXPECT_EQ(view.dtype, tensors[i].dtype);
    EXPECT_EQ(view.shape, tensors[i].shape);
    ASSERT_EQ(view.size_bytes, tensors[i].bytes.size());
    EXPECT_TRUE(std::equal(tensors[i].bytes.begin(), tensors[i].bytes.end(), view.data)) << view.name;
  }
}

TEST_F(SafetensorsTest, HeaderIsPaddedSoDataStartsEightByteAligned) {
  const auto bytes = pattern_bytes(4, 9);
  for (const std::string name : {"a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh"}) {
    write_safetensors(path("p.safetensors"), {{name, DType::F32, {1}, bytes}});
    MappedFile mapped(path("p.safetensors"));
    uint64_t header_length = 0;
    std::memcpy(&header_length, mapped.data(), 8);
    EXPECT_EQ((8 + header_length) % 8, 0u) << name;
    EXPECT_NO_THROW(SafetensorsFile{path("p.safetensors")});
  }
}

TEST_F(SafetensorsTest, ShardedCheckpointRoundTripsThroughTheIndex) {
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<TensorToWrite> tensors;
  for (int i = 0; i < 7; ++i) buffers.push_back(pattern_bytes(100 * (i + 1), static_cast<uint8_t>(i)));
  for (int i = 0; i < 7; ++i) {
    tensors.push_back({"layer." + std::to_string(i), DType::U8, {static_cast<int64_t>(buffers[i].size())},
                       buffers[i]});
  }
  write_safetensors_checkpoint(dir_.string(), tensors, /*max_shard_bytes=*/1000);

  EXPECT_FALSE(fs::exists(path("model.safetensors")));
  const json index = json::parse(read_text_file(path("model.safetensors.index.json")));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 2800u);
  // 100+200+300+400 | 500 | 600 | 700: greedy, never past 1000 bytes unless one tensor is larger.
  EXPECT_EQ(index["weight_map"]["layer.0"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.3"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.4"], "model-00002-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.6"], "model-00004-of-00004.safetensors");

  auto checkpoint = Checkpoint::open_directory(dir_.string());
  EXPECT_EQ(checkpoint->names().size(), tensors.size());
  EXPECT_EQ(checkpoint->file_paths().size(), 4u);
  EXPECT_EQ(checkpoint->total_bytes(), 2800u);
  for (const TensorToWrite& tensor : tensors) {
    const TensorView& view = checkpoint->get(tensor.name);
    EXPECT_EQ(view.shape, tensor.shape);
    EXPECT_TRUE(std::equal(tensor.bytes.begin(), tensor.bytes.end(), view.data)) << tensor.name;
  }
  SafetensorsFile shard(path("model-00002-of-00004.safetensors"));
  EXPECT_EQ(shard.metadata().at("format"), "pt");  // transformers refuses shards without it
}

TEST_F(SafetensorsTest, SwitchingBetweenSingleAndShardedLeavesNoStaleLayout) {
  const auto bytes = pattern_bytes(64, 5);
  std::vector<TensorToWrite> tensors = {{"a", DType::F32, {16}, bytes}, {"b", DType::F32, {16}, bytes}};
  write_safetensors_checkpoint(dir_.string(), tensors, 1 << 20);
  EXPECT_TRUE(fs::exists(path("model.safetensors")));
  write_safetensors_checkpoint(dir_.string(), tensors, 64);
  EXPECT_FALSE(fs::exists(path("model.safetensors")));
  EXPECT_EQ(Checkpoint::open_directory(dir_.string())->file_paths().size(), 2u);
  write_safetensors_checkpoint(dir_.string(), tensors, 1 << 20);
  EXPECT_FALSE(fs::exists(path("model.safetensors.index.json")));
  EXPECT_EQ(Checkpoint::open_directory(dir_.string())->file_paths().size(), 1u);
}

TEST_F(SafetensorsTest, OpensTheFixtureDirectoryAndReportsAbsentTensorsByName) {
  const auto file = test::shared_path("fixtures/tiny-r1-llama/model.safetensors");
  RETORT_REQUIRE_PATH(file, "tiny-r1-llama fixture");
  auto checkpoint = Checkpoint::open_directory(fs::path(file).parent_path().string());
  EXPECT_NE(checkpoint->find("model.norm.weight"), nullptr);
  EXPECT_EQ(checkpoint->find("no.such.tensor"), nullptr);
  try {
    checkpoint->get("no.such.tensor");
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::NotFound);
    EXPECT_NE(std::string(error.what()).find("no.such.tensor"), std::string::npos);
    EXPECT_NE(std::string(error.what()).find("tiny-r1-llama"), std::string::npos);
  }
}

TEST_F(SafetensorsTest, WriterRefusesBytesThatDoNotMatchTheShape) {
  const auto bytes = pattern_bytes(10, 1);
  EXPECT_THROW(write_safetensors(path("w.safetensors"), {{"w", DType::F32, {3}, bytes}}), Error);
  EXPECT_FALSE(fs::exists(path("w.safetensors")));
}

// ---- broken input: one test per failure, each message naming the file and the tensor/key ----

TEST_F(SafetensorsTest, MissingFile) {
  expect_open_error(path("absent.safetensors"), ErrorKind::NotFound, {"absent.safetensors"});
}

TEST_F(SafetensorsTest, TruncatedBeforeTheHeaderLength) {
  std::ofstream(path("short.safetensors"), std::ios::binary) << "abc";
  expect_open_error(path("short.safetensors"), ErrorKind::InvalidInput, {"short.safetensors", "truncated"});
}

TEST_F(SafetensorsTest, TruncatedCopyOfTheFixture) {
  const auto file = test::shared_path("fixtures/tiny-r1-qwen/model.safetensors");
  RETORT_REQUIRE_PATH(file, "tiny-r1-qwen fixture");
  fs::copy_file(file, path("cut.safetensors"));
  fs::resize_file(path("cut.safetensors"), fs::file_size(file) - 100);
  expect_open_error(path("cut.safetensors"), ErrorKind::InvalidInput, {"cut.safetensors", "truncated"});
}

TEST_F(SafetensorsTest, HeaderLengthLargerThanTheFile) {
  auto file = write_raw("long.safetensors", "{}", 0, /*length_field=*/1000);
  expect_open_error(file, ErrorKind::InvalidInput, {"long.safetensors", "1000"});
}

TEST_F(SafetensorsTest, HeaderLengthTooSmall) {
  auto file = write_raw("tiny.safetensors", "{}", 0, /*length_field=*/1);
  expect_open_error(file, ErrorKind::InvalidInput, {"tiny.safetensors", "header length"});
}

TEST_F(SafetensorsTest, InvalidJsonHeader) {
  auto file = write_raw("json.safetensors", R"({"w": {"dtype": "F32",)", 0);
  expect_open_error(file, ErrorKind::InvalidInput, {"json.safetensors", "not valid JSON"});
}

TEST_F(SafetensorsTest, HeaderThatIsNotAnObject) {
  auto file = write_raw("array.safetensors", "[1, 2]", 0);
  expect_open_error(file, ErrorKind::InvalidInput, {"array.safetensors", "JSON object"});
}

TEST_F(SafetensorsTest, UnknownDType) {
  auto file = write_raw("fp8.safetensors",
                        R"({"w.weight": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}})", 4);
  expect_open_error(file, ErrorKind::Unsupported, {"fp8.safetensors", "w.weight", "'F8_E4M3'", "BF16, F16, F32"});
}

TEST_F(SafetensorsTest, ShapeTimesDTypeSizeDiffersFromSpan) {
  auto file = write_raw("span.safetensors",
                        R"({"w.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})", 20);
  expect_open_error(file, ErrorKind::InvalidInput, {"span.safetensors", "w.weight", "24 bytes", "20"});
}

TEST_F(SafetensorsTest, ShapeWhoseByteSizeOverflows) {
  auto file = write_raw(
      "huge.safetensors",
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 0);
  expect_open_error(file, ErrorKind::InvalidInput, {"huge.safetensors", "'w'", "2^64"});
}

TEST_F(SafetensorsTest, NegativeOrFractionalShapeEntry) {
  auto negative = write_raw("neg.safetensors",
                            R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})", 0);
  expect_open_error(negative, ErrorKind::InvalidInput, {"neg.safetensors", "'w'", "-1"});
  auto fractional = write_raw("frac.safetensors",
                              R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 0]}})", 0);
  expect_open_error(fractional, ErrorKind::InvalidInput, {"frac.safetensors", "'w'", "1.5"});
}

TEST_F(SafetensorsTest, SpanOutsideTheFile) {
  auto file = write_raw("outside.safetensors",
                        R"({"w.weight": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})", 16);
  expect_open_error(file, ErrorKind::InvalidInput, {"outside.safetensors", "w.weight", "[8, 24)"});
}

TEST_F(SafetensorsTest, OverlappingSpans) {
  auto file = write_raw("overlap.safetensors",
                        R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                        R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                        16);
  expect_open_error(file, ErrorKind::InvalidInput, {"overlap.safetensors", "'a'", "'b'", "overlap"});
}

TEST_F(SafetensorsTest, MetadataWithANonStringValue) {
  auto file = write_raw("meta.safetensors", R"({"__metadata__": {"format": 1}})", 0);
  expect_open_error(file, ErrorKind::InvalidInput, {"meta.safetensors", "__metadata__", "format"});
}

TEST_F(SafetensorsTest, DirectoryWithoutWeightsSaysWhatItLookedFor) {
  try {
    Checkpoint::open_directory(dir_.string());
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::NotFound);
    const std::string message = error.what();
    EXPECT_NE(message.find(dir_.string()), std::string::npos) << message;
    EXPECT_NE(message.find("model.safetensors.index.json"), std::string::npos) << message;
  }
}

// A two-shard checkpoint to break in the tests below.
void write_two_shards(const std::string& dir) {
  static const auto bytes = pattern_bytes(64, 7);
  write_safetensors_checkpoint(dir, {{"a", DType::F32, {16}, bytes}, {"b", DType::F32, {16}, bytes}}, 64);
}

TEST_F(SafetensorsTest, MissingShard) {
  write_two_shards(dir_.string());
  fs::remove(path("model-00002-of-00002.safetensors"));
  try {
    Checkpoint::open_directory(dir_.string());
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::NotFound);
    EXPECT_NE(std::string(error.what()).find("model-00002-of-00002.safetensors"), std::string::npos);
    EXPECT_NE(std::string(error.what()).find("model.safetensors.index.json"), std::string::npos);
  }
}

TEST_F(SafetensorsTest, IndexPlacesATensorInTheWrongShard) {
  write_two_shards(dir_.string());
  json index = json::parse(read_text_file(path("model.safetensors.index.json")));
  index["weight_map"]["a"] = "model-00002-of-00002.safetensors";
  index["weight_map"]["b"] = "model-00001-of-00002.safetensors";
  std::ofstream(path("model.safetensors.index.json")) << index.dump();
  try {
    Checkpoint::open_directory(dir_.string());
    FAIL();
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("tensor 'a' in 'model-00002-of-00002.safetensors'"), std::string::npos) << message;
    EXPECT_NE(message.find(path("model-00001-of-00002.safetensors")), std::string::npos) << message;
  }
}

TEST_F(SafetensorsTest, IndexListsATensorNoShardHolds) {
  write_two_shards(dir_.string());
  json index = json::parse(read_text_file(path("model.safetensors.index.json")));
  index["weight_map"]["ghost"] = "model-00001-of-00002.safetensors";
  std::ofstream(path("model.safetensors.index.json")) << index.dump();
  try {
    Checkpoint::open_directory(dir_.string());
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("'ghost'"), std::string::npos) << error.what();
  }
}

TEST_F(SafetensorsTest, IndexNamingAFileOutsideTheDirectory) {
  write_two_shards(dir_.string());
  std::ofstream(path("model.safetensors.index.json")) << R"({"weight_map": {"a": "../a.safetensors"}})";
  EXPECT_THROW(Checkpoint::open_directory(dir_.string()), Error);
}

TEST_F(SafetensorsTest, InvalidJsonIndex) {
  std::ofstream(path("model.safetensors.index.json")) << "{\"weight_map\": ";
  try {
    Checkpoint::open_directory(dir_.string());
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("model.safetensors.index.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace retort
