// Loading a checkpoint whose tensors disagree with its config: each case a clear error, never a
// crash. The broken checkpoints are made from the golden fixture in a temporary directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "io/safetensors.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "test_support.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

namespace fs = std::filesystem;

class BrokenCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    fixture_ = test::shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(fixture_, "fixture tiny-r1-qwen");
    dir_ = fs::temp_directory_path() / ("retort-broken-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    fs::copy_file(fs::path(fixture_) / "config.json", dir_ / "config.json");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes the fixture's tensors, changed by `edit`, as this directory's model.safetensors.
  void write_tensors(const std::function<void(std::vector<TensorToWrite>&)>& edit) {
    auto source = Checkpoint::open_directory(fixture_);
    std::vector<TensorToWrite> tensors;
    for (const auto& name : source->names()) {
      const TensorView& t = source->get(name);
      tensors.push_back({name, t.dtype, t.shape, {t.data, t.size_bytes}});
    }
    edit(tensors);
    write_safetensors((dir_ / "model.safetensors").string(), tensors);
  }

  std::string load_error() {
    CpuBackend backend;
    try {
      load_model(dir_.string(), backend);
    } catch (const Error& error) {
      return error.what();
    }
    return "(loaded without error)";
  }

  std::string fixture_;
  fs::path dir_;
};

TEST_F(BrokenCheckpoint, MissingTensorIsNamed) {
  write_tensors([](auto& tensors) {
    std::erase_if(tensors, [](const TensorToWrite& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
  });
  EXPECT_NE(load_error().find("'model.layers.1.mlp.up_proj.weight' [512, 192] is missing"), std::string::npos)
      << load_error();
}

TEST_F(BrokenCheckpoint, ShapeMismatchSaysBothShapes) {
  std::vector<uint8_t> small(16 * 192 * 2);
  write_tensors([&](auto& tensors) {
    for (auto& t : tensors)
      if (t.name == "model.layers.0.self_attn.k_proj.weight") t.shape = {16, 192}, t.bytes = small;
  });
  const std::string error = load_error();
  EXPECT_NE(error.find("[16, 192]"), std::string::npos) << error;
  EXPECT_NE(error.find("[32, 192]"), std::string::npos) << error;
}

TEST_F(BrokenCheckpoint, ExtraTensorIsReported) {
  std::vector<uint8_t> bytes(4 * 4);
  write_tensors([&](auto& tensors) { tensors.push_back({"model.layers.3.extra.weight", DType::F32, {4}, bytes}); });
  EXPECT_NE(load_error().find("model.layers.3.extra.weight"), std::string::npos) << load_error();
}

TEST_F(BrokenCheckpoint, UnsupportedWeightDtypeIsNamed) {
  std::vector<uint8_t> bytes(192);
  write_tensors([&](auto& tensors) {
    for (auto& t : tensors)
      if (t.name == "model.norm.weight") t.dtype = DType::I8, t.bytes = bytes;
  });
  EXPECT_NE(load_error().find("model.norm.weight"), std::string::npos) << load_error();
}

TEST_F(BrokenCheckpoint, SlidingWindowConfigIsRefusedWithReason) {
  write_tensors([](auto&) {});
  std::string config = read_text_file((dir_ / "config.json").string());
  config.replace(config.find("\"use_sliding_window\": false"), 27, "\"use_sliding_window\": true");
  write_file_atomically((dir_ / "config.json").string(), config);
  EXPECT_NE(load_error().find("sliding-window"), std::string::npos) << load_error();
}

TEST_F(BrokenCheckpoint, MissingConfigAndMissingDirectory) {
  fs::remove(dir_ / "config.json");
  EXPECT_NE(load_error().find("config.json"), std::string::npos) << load_error();
  CpuBackend backend;
  EXPECT_THROW(load_model((dir_ / "nope").string(), backend), Error);
}

}  // namespace
}  // namespace retort
