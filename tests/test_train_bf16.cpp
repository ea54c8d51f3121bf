// bf16 mixed precision on the whole model: the golden training fixtures' batch through the f32 and
// the bf16 paths from the same weights. The bf16 loss and gradients must stay within what
// rounding the matrix products' operands to 8 significant bits can explain, and must differ from
// the f32 ones (the bf16 products are really used); five AdamW steps must train alike.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>
#include <nlohmann/json.hpp>

#include "io/model_config.h"
#include "io/safetensors.h"
#include "test_support.h"
#include "train/optimizer.h"
#include "train/train_model.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort::train {
namespace {

double relative_l2(const float* got, const float* want, size_t n) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < n; ++i) {
    diff += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    norm += double(want[i]) * want[i];
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

struct Pass {
  double loss;
  std::vector<float> grads;
};

// One forward and backward; the gradients are taken at `loss_scale` times the loss and divided by it
// afterwards (exactly, a power of two), as fp16 training's loss scaling does.
Pass forward_backward(const ModelConfig& config, const Checkpoint& weights, const std::vector<int32_t>& inputs,
                      const std::vector<int32_t>& targets, int64_t batch, MatmulPrecision precision,
                      double loss_scale = 1) {
  TrainModelOptions options;
  options.matmul_precision = precision;
  TrainModel<float> model(config, batch, int64_t(inputs.size()) / batch, options);
  load_parameters(model.layout(), weights, model.params());
  const LossSum loss = model.forward(inputs.data(), targets.data());
  model.zero_grad();
  model.backward(loss_scale / double(loss.targets));
  std::vector<float> grads(model.grads(), model.grads() + model.parameter_count());
  for (float& g : grads) g = float(g / loss_scale);
  return {loss.sum / double(loss.targets), std::move(grads)};
}

struct FixtureBatch {
  ModelConfig config;
  std::unique_ptr<Checkpoint> weights;
  std::vector<int32_t> inputs, targets;
  int64_t batch = 0;
};

FixtureBatch read_fixture_batch(const std::string& model_dir, const std::string& train_dir) {
  FixtureBatch f{load_hf_config(model_dir + "/config.json"), Checkpoint::open_directory(model_dir), {}, {}, 0};
  MappedFile file(train_dir + "/expected.json");
  const auto expected = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(file.data()), file.size()));
  for (const auto& row : expected["input_tokens"]) for (int32_t t : row) f.inputs.push_back(t);
  for (const auto& row : expected["target_tokens"]) for (int32_t t : row) f.targets.push_back(t);
  f.batch = int64_t(expected["input_tokens"].size());
  return f;
}

// The worst per-tensor relative L2 distance between two passes' gradients, and its tensor.
std::pair<double, std::string> worst_gradient(const ModelConfig& config, const Pass& got, const Pass& want) {
  TrainModel<float> shapes(config, 1, 1);
  std::pair<double, std::string> worst{0.0, ""};
  for (const ParameterInfo& info : shapes.layout().tensors) {
    const double error = relative_l2(got.grads.data() + info.offset, want.grads.data() + info.offset, info.count);
    if (error > worst.first) worst = {error, info.name};
  }
  return worst;
}

class TrainBf16 : public ::testing::TestWithParam<std::string> {};

// The bounds. bf16 keeps 8 significant bits, so rounding an operand changes it by at most
// 2^-9 ≈ 2e-3 relative and a product of two rounded operands by at most ~2^-8 ≈ 3.9e-3. Those
// errors have random signs, so a dot product of K terms moves by about 2^-9·√2 of its typical
// term size times √K, i.e. ~3e-3 of its own size for the sums here. The loss is one number at
// the end of 3 layers of such products: within 1e-2 relative (2.5 × 2^-8). Each gradient tensor
// goes through the forward and then the backward of every layer above it (up to 2·3 + 2 chains of
// products, errors adding in quadrature): within 5e-2 per tensor (‖Δ‖/‖g‖). The f32 path is
// within 4e-6 of autograd on the same tensors, so any bigger gap is bf16 rounding or a bug; the
// lower bound 1e-4 shows the products really were rounded.
TEST_P(TrainBf16, LossAndGradientsStayWithinBf16RoundingOfF32) {
  const std::string model_dir = test::shared_path("fixtures/" + GetParam());
  const std::string train_dir = test::shared_path("fixtures/train-" + GetParam());
  RETORT_REQUIRE_PATH(model_dir, "fixture " + GetParam());
  RETORT_REQUIRE_PATH(train_dir, "fixture train-" + GetParam());
  const ModelConfig config = load_hf_config(model_dir + "/config.json");
  const auto weights = Checkpoint::open_directory(model_dir);
  MappedFile file(train_dir + "/expected.json");
  const auto expected = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(file.data()), file.size()));
  std::vector<int32_t> inputs, targets;
  for (const auto& row : expected["input_tokens"]) for (int32_t t : row) inputs.push_back(t);
  for (const auto& row : expected["target_tokens"]) for (int32_t t : row) targets.push_back(t);
  const auto batch = int64_t(expected["input_tokens"].size());

  const Pass f32 = forward_backward(config, *weights, inputs, targets, batch, MatmulPrecision::f32);
  const Pass bf16 = forward_backward(config, *weights, inputs, targets, batch, MatmulPrecision::bf16);
  const double loss_error = std::fabs(bf16.loss - f32.loss) / f32.loss;
  EXPECT_LE(loss_error, 1e-2) << "f32 loss " << f32.loss << ", bf16 loss " << bf16.loss;

  TrainModel<float> shapes(config, 1, 1);
  double worst = 0;
  std::string worst_name;
  for (const ParameterInfo& info : shapes.layout().tensors) {
    const double error = relative_l2(bf16.grads.data() + info.offset, f32.grads.data() + info.offset, info.count);
    EXPECT_LE(error, 5e-2) << info.name;
    if (error > worst) worst = error, worst_name = info.name;
  }
  EXPECT_GE(worst, 1e-4) << "the bf16 gradients are as close to f32 as f32 rounding: were the products rounded?";
  std::printf("%s: loss f32 %.6f bf16 %.6f (relative %.2g); worst gradient tensor %s at %.2g\n", GetParam().c_str(),
              f32.loss, bf16.loss, loss_error, worst_name.c_str(), worst);
}

// Five AdamW steps of the fixture (lr 1e-3 on one batch: the loss falls from ~8 to ~0.01) in f32
// or in bf16: the losses before each step and after the last.
std::vector<double> five_step_losses(const std::string& model_dir, const nlohmann::json& expected,
                                     MatmulPrecision precision) {
  const ModelConfig config = load_hf_config(model_dir + "/config.json");
  std::vector<int32_t> inputs, targets;
  for (const auto& row : expected["input_tokens"]) for (int32_t t : row) inputs.push_back(t);
  for (const auto& row : expected["target_tokens"]) for (int32_t t : row) targets.push_back(t);
  const auto batch = int64_t(expected["input_tokens"].size());
  TrainModelOptions options;
  options.matmul_precision = precision;
  TrainModel<float> model(config, batch, int64_t(inputs.size()) / batch, options);
  load_parameters(model.layout(), *Checkpoint::open_directory(model_dir), model.params());
  const auto& adam = expected["adamw"];
  AdamW optimizer(model.layout(), {adam["lr"].get<double>(), adam["beta1"].get<double>(), adam["beta2"].get<double>(),
                                   adam["eps"].get<double>(), adam["weight_decay"].get<double>()});
  std::vector<double> losses;
  for (int step = 0; step <= 5; ++step) {
    const LossSum loss = model.forward(inputs.data(), targets.data());
    losses.push_back(loss.sum / double(loss.targets));
    if (step == 5) break;
    model.zero_grad();
    model.backward(1.0 / double(loss.targets));
    optimizer.step(model.params(), model.grads(), adam["lr"].get<double>());
  }
  return losses;
}

// fp16 products (IEEE half operands, f32 sums) with the default loss scale 2^16: half keeps 11
// significant bits, 8× finer than bf16, so the bf16 bounds above divided by 8: loss within 1.25e-3,
// each gradient tensor within 6.25e-3. The same products on gradients 2^16 times smaller (scale
// 2^-16: what a 151,936-token softmax or a long batch does to dY without a loss scale) lose what
// falls under half's range (below 6e-8 it has no bits left): that run's gradients must be far worse,
// which is what the loss scale is for.
TEST_P(TrainBf16, Fp16WithLossScaleStaysWithinHalfRoundingOfF32) {
  const std::string model_dir = test::shared_path("fixtures/" + GetParam());
  const std::string train_dir = test::shared_path("fixtures/train-" + GetParam());
  RETORT_REQUIRE_PATH(model_dir, "fixture " + GetParam());
  RETORT_REQUIRE_PATH(train_dir, "fixture train-" + GetParam());
  const FixtureBatch f = read_fixture_batch(model_dir, train_dir);
  const Pass f32 = forward_backward(f.config, *f.weights, f.inputs, f.targets, f.batch, MatmulPrecision::f32);
  const Pass scaled =
      forward_backward(f.config, *f.weights, f.inputs, f.targets, f.batch, MatmulPrecision::f16, 65536.0);
  const Pass unscaled =
      forward_backward(f.config, *f.weights, f.inputs, f.targets, f.batch, MatmulPrecision::f16, 1.0 / 65536);
  EXPECT_LE(std::fabs(scaled.loss - f32.loss) / f32.loss, 1.25e-3) << "f32 " << f32.loss << ", f16 " << scaled.loss;
  const auto [worst_scaled, scaled_name] = worst_gradient(f.config, scaled, f32);
  const auto [worst_unscaled, unscaled_name] = worst_gradient(f.config, unscaled, f32);
  EXPECT_LE(worst_scaled, 6.25e-3) << scaled_name;
  EXPECT_GE(worst_scaled, 1e-5) << "the f16 gradients are as close to f32 as f32 rounding: were the products rounded?";
  EXPECT_GT(worst_unscaled, 10 * worst_scaled) << "gradients under half's range should have been lost";
  std::printf("%s: f16 loss relative %.2g; worst gradient tensor at loss scale 2^16: %s %.2g; at scale 2^-16: %s %.2g\n",
              GetParam().c_str(), std::fabs(scaled.loss - f32.loss) / f32.loss, scaled_name.c_str(), worst_scaled,
              unscaled_name.c_str(), worst_unscaled);
}

TEST_P(TrainBf16, FiveAdamWStepsTrackF32) {
  const std::string model_dir = test::shared_path("fixtures/" + GetParam());
  const std::string train_dir = test::shared_path("fixtures/train-" + GetParam());
  RETORT_REQUIRE_PATH(model_dir, "fixture " + GetParam());
  RETORT_REQUIRE_PATH(train_dir, "fixture train-" + GetParam());
  MappedFile file(train_dir + "/expected.json");
  const auto expected = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(file.data()), file.size()));
  const auto f32 = five_step_losses(model_dir, expected, MatmulPrecision::f32);
  const auto bf16 = five_step_losses(model_dir, expected, MatmulPrecision::bf16);
  // Adam's steps are normalised per element, so the ≤ 5e-2 gradient differences above become step
  // differences of the same relative size (and of 2·lr where a near-zero gradient changes sign):
  // each loss within 5e-2 of f32's while the loss itself falls a hundredfold or more.
  double worst = 0;
  for (size_t i = 0; i < f32.size(); ++i) {
    EXPECT_NEAR(bf16[i], f32[i], 5e-2 * f32[i]) << "before step " << i + 1;
    worst = std::max(worst, std::fabs(bf16[i] - f32[i]) / f32[i]);
  }
  EXPECT_LT(bf16.back(), 1e-2 * bf16.front()) << "the bf16 run did not train";
  std::printf("%s: 5 AdamW steps, loss %.4f -> f32 %.6f, bf16 %.6f; worst relative difference %.2g\n",
              GetParam().c_str(), f32.front(), f32.back(), bf16.back(), worst);
}

TEST(TrainBf16Model, DoubleModelsRefuseBf16Products) {
  const std::string model_dir = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(model_dir, "fixture tiny-r1-qwen");
  const ModelConfig config = load_hf_config(model_dir + "/config.json");
  TrainModelOptions options;
  EXPECT_NO_THROW(TrainModel<double>(config, 1, 4, options));
  options.matmul_precision = MatmulPrecision::bf16;
  EXPECT_THROW(TrainModel<double>(config, 1, 4, options), Error);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TrainBf16, ::testing::Values("tiny-r1-qwen", "tiny-r1-llama"),
                         test::fixture_test_name<std::string>);

}  // namespace
}  // namespace retort::train
