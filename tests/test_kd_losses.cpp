// Every distillation loss and its gradients against PyTorch's f64 autograd on the fixture
// (../shared/fixtures/kd-losses: 1e-9 relative in f64, 1e-5 in f32), and against central finite
// differences on random, awkward sizes (including a teacher with a larger padded vocabulary).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <numeric>
#include <nlohmann/json.hpp>
#include <random>

#include "finite_difference.h"
#include "test_support.h"
#include "train/kd_losses.h"
#include "util/error.h"

namespace retort::train {
namespace {

using json = nlohmann::json;

std::vector<double> flat(const json& j) {
  std::vector<double> out;
  std::function<void(const json&)> walk = [&](const json& x) {
    if (x.is_array())
      for (const auto& e : x) walk(e);
    else
      out.push_back(x.get<double>());
  };
  walk(j);
  return out;
}

template <typename T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Relative error max|a − b| / max|b| (a per-tensor relative measure that zero entries do not break).
template <typename T>
double relative_error(const std::vector<T>& got, const std::vector<double>& want) {
  double diff = 0, norm = 0;
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    diff = std::max(diff, std::abs(double(got[i]) - want[i]));
    norm = std::max(norm, std::abs(want[i]));
  }
  return norm > 0 ? diff / norm : diff;
}

json load_fixture() {
  std::ifstream in(test::shared_path("fixtures/kd-losses/kd_losses.json"));
  return json::parse(in);
}

template <typename T>
void check_against_fixture(double tolerance) {
  const json f = load_fixture();
  const auto& in = f["inputs"];
  const auto& sz = f["sizes"];
  const int64_t N = sz["positions"], V = sz["student_vocab"], Vt = sz["teacher_vocab"];
  const int64_t ds = sz["student_hidden"], dt = sz["teacher_hidden"], Hs = sz["student_heads"],
                Ht = sz["teacher_heads"], S = sz["seq"];
  const double temperature = f["temperature"], beta = f["beta"];
  const auto zs = cast<T>(flat(in["student_logits"])), zt = cast<T>(flat(in["teacher_logits"]));
  std::vector<int32_t> labels;
  for (double x : flat(in["labels"])) labels.push_back(int32_t(x));
  auto value_ok = [&](const char* name, double got) {
    const double want = f["losses"][name];
    EXPECT_LE(std::abs(got - want) / std::abs(want), tolerance) << name << ": " << got << " vs " << want;
  };
  auto grad_ok = [&](const char* name, const char* input, const std::vector<T>& got) {
    EXPECT_LE(relative_error(got, flat(f["grads"][name][input])), tolerance) << name << " d/d " << input;
  };
  const double mean = 1.0 / double(N);

  std::vector<T> d(zs.size(), T(0));
  value_ok("ce", hard_ce_loss(d.data(), zs.data(), labels.data(), N, V, mean) * mean);
  grad_ok("ce", "student_logits", d);

  const std::pair<const char*, SoftLossKind> soft[] = {
      {"kl_forward", SoftLossKind::ForwardKL}, {"kl_reverse", SoftLossKind::ReverseKL}, {"jsd", SoftLossKind::JSD}};
  for (auto [name, kind] : soft) {
    std::fill(d.begin(), d.end(), T(0));
    const double loss = soft_loss(d.data(), zs.data(), zt.data(), Vt, N, V, {kind, temperature, beta}, nullptr, mean);
    value_ok(name, loss * mean);
    grad_ok(name, "student_logits", d);
  }

  const auto hs = cast<T>(flat(in["student_hidden"])), ht = cast<T>(flat(in["teacher_hidden"]));
  const auto W = cast<T>(flat(in["proj_weight"])), b = cast<T>(flat(in["proj_bias"]));
  const std::pair<const char*, HiddenLossKind> hidden[] = {{"hidden_mse", HiddenLossKind::MSE},
                                                           {"hidden_cosine", HiddenLossKind::Cosine}};
  for (auto [name, kind] : hidden) {
    std::vector<T> dhs(hs.size(), T(0)), dW(W.size(), T(0)), db(b.size(), T(0));
    value_ok(name, hidden_loss(dhs.data(), dW.data(), db.data(), hs.data(), ht.data(), W.data(), b.data(), N, ds, dt,
                               kind, nullptr, mean) * mean);
    grad_ok(name, "student_hidden", dhs);
    grad_ok(name, "proj_weight", dW);
    grad_ok(name, "proj_bias", db);
  }

  const auto ss = cast<T>(flat(in["student_attention_scores"])), st = cast<T>(flat(in["teacher_attention_scores"]));
  std::vector<T> as(ss.size()), at(st.size());
  causal_softmax_forward(as.data(), ss.data(), Hs, S);
  causal_softmax_forward(at.data(), st.data(), Ht, S);
  const std::pair<const char*, AttentionLossKind> attention[] = {{"attention_mse", AttentionLossKind::MSE},
                                                                 {"attention_kl", AttentionLossKind::KL}};
  for (auto [name, kind] : attention) {
    std::vector<T> dA(as.size(), T(0)), dS(as.size(), T(0));
    value_ok(name, attention_loss(dA.data(), as.data(), at.data(), 1, Hs, Ht, S, kind, 1.0));
    causal_softmax_backward(dS.data(), dA.data(), as.data(), Hs, S);
    grad_ok(name, "student_attention_scores", dS);
  }
}

TEST(KdLossesGolden, EveryLossAndGradientMatchesPyTorchInDouble) {
  RETORT_REQUIRE_PATH(test::shared_path("fixtures/kd-losses/kd_losses.json"), "kd-losses fixture");
  check_against_fixture<double>(1e-9);
}

TEST(KdLossesGolden, EveryLossAndGradientMatchesPyTorchInFloat) {
  RETORT_REQUIRE_PATH(test::shared_path("fixtures/kd-losses/kd_losses.json"), "kd-losses fixture");
  check_against_fixture<float>(1e-5);
}

// ---- finite differences on random, awkward sizes ----

using test::Vec;
using test::gradient_error;
using test::random_vec;



constexpr double kFdTolerance = 1e-6;

TEST(KdLossesFiniteDifferences, LogitLossesWithPaddedTeacherVocabularyAndSkippedRows) {
  std::mt19937_64 rng(7);
  const int64_t N = 7, V = 37, Vt = 45;
  Vec zs = random_vec(size_t(N * V), rng, 2.0), zt = random_vec(size_t(N * Vt), rng, 2.0);
  const std::vector<int32_t> targets = {3, -1, 0, 36, 5, -1, 11};
  for (double temperature : {1.0, 2.5})
    for (SoftLossKind kind : {SoftLossKind::ForwardKL, SoftLossKind::ReverseKL, SoftLossKind::JSD}) {
      const SoftLossOptions o{kind, temperature, 0.3};
      Vec d(zs.size(), 0.0);
      soft_loss(d.data(), zs.data(), zt.data(), Vt, N, V, o, targets.data(), 0.5);
      for (double& x : d) x /= 0.5;
      EXPECT_LT(gradient_error(zs, d, [&] { return soft_loss<double>(nullptr, zs.data(), zt.data(), Vt, N, V, o,
                                                                     targets.data(), 1.0); }),
                kFdTolerance)
          << "kind " << int(kind) << " T " << temperature;
      for (int64_t v = 0; v < V; ++v) EXPECT_EQ(d[size_t(V + v)], 0.0) << "a skipped row got a gradient";
    }
  Vec d(zs.size(), 0.0);
  hard_ce_loss(d.data(), zs.data(), targets.data(), N, V, 1.0);
  EXPECT_LT(gradient_error(zs, d, [&] { return hard_ce_loss<double>(nullptr, zs.data(), targets.data(), N, V, 1.0); }),
            kFdTolerance);
}

TEST(KdLossesFiniteDifferences, TopKForwardKlEqualsFullKlWhenKIsTheVocabulary) {
  std::mt19937_64 rng(8);
  const int64_t N = 5, V = 29, k = 6;
  Vec zs = random_vec(size_t(N * V), rng, 2.0), zt = random_vec(size_t(N * V), rng, 2.0);
  std::vector<int32_t> ids(size_t(N * k));
  Vec values(size_t(N * k));
  top_k_rows(ids.data(), values.data(), zt.data(), V, N, V, k);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 1; j < k; ++j) EXPECT_GE(values[size_t(n * k + j - 1)], values[size_t(n * k + j)]);
  Vec d(zs.size(), 0.0);
  soft_loss_top_k(d.data(), zs.data(), ids.data(), values.data(), N, V, k, 2.0, nullptr, 1.0);
  EXPECT_LT(gradient_error(zs, d, [&] {
              return soft_loss_top_k<double>(nullptr, zs.data(), ids.data(), values.data(), N, V, k, 2.0, nullptr, 1.0);
            }),
            kFdTolerance);
  // With k = V the sparse teacher is the full one.
  std::vector<int32_t> all_ids(size_t(N * V));
  Vec all_values(size_t(N * V));
  top_k_rows(all_ids.data(), all_values.data(), zt.data(), V, N, V, V);
  const double sparse = soft_loss_top_k<double>(nullptr, zs.data(), all_ids.data(), all_values.data(), N, V, V, 2.0,
                                                nullptr, 1.0);
  const double full = soft_loss<double>(nullptr, zs.data(), zt.data(), V, N, V, {SoftLossKind::ForwardKL, 2.0, 0.5},
                                        nullptr, 1.0);
  EXPECT_NEAR(sparse, full, 1e-10 * std::abs(full));
}

// top_k_rows against a full sort (value descending, ties to the lower id) on rows with many ties.
TEST(KdLossesTopK, RowsMatchAFullSortWithTies) {
  std::mt19937_64 rng(21);
  const int64_t N = 4, V = 1003, stride = 1010;
  std::vector<float> logits(size_t(N * stride));
  for (auto& x : logits) x = float(int(rng() % 40)) * 0.25f;  // 40 distinct values: ties everywhere
  for (int64_t k : {1, 7, 40, 1003}) {
    std::vector<int32_t> ids(size_t(N * k));
    std::vector<float> values(size_t(N * k));
    top_k_rows(ids.data(), values.data(), logits.data(), stride, N, V, k);
    for (int64_t n = 0; n < N; ++n) {
      std::vector<int32_t> order(static_cast<size_t>(V));
      std::iota(order.begin(), order.end(), 0);
      const float* row = logits.data() + n * stride;
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
      for (int64_t j = 0; j < k; ++j) {
        ASSERT_EQ(ids[size_t(n * k + j)], order[size_t(j)]) << "k " << k << " row " << n << " rank " << j;
        ASSERT_EQ(values[size_t(n * k + j)], row[order[size_t(j)]]);
      }
    }
  }
}

// The f32 top-k forward KL (vectorised softmax kernels) against the f64 path on a long, awkward
// row length with skipped rows.
TEST(KdLossesTopK, FloatPathMatchesDouble) {
  std::mt19937_64 rng(22);
  const int64_t N = 6, V = 5003, k = 16;
  Vec zs = random_vec(size_t(N * V), rng, 4.0), zt = random_vec(size_t(N * V), rng, 4.0);
  const std::vector<int32_t> targets{3, -1, 7, 0, -1, 11};
  std::vector<int32_t> ids(size_t(N * k));
  Vec values(size_t(N * k));
  top_k_rows(ids.data(), values.data(), zt.data(), V, N, V, k);
  for (double temperature : {1.0, 2.0, 4.5}) {
    Vec d64(zs.size(), 0.0);
    const double want = soft_loss_top_k(d64.data(), zs.data(), ids.data(), values.data(), N, V, k, temperature,
                                        targets.data(), 0.7);
    std::vector<float> zs32 = cast<float>(zs), values32 = cast<float>(values), d32(zs.size(), 0.0f);
    const double got = soft_loss_top_k(d32.data(), zs32.data(), ids.data(), values32.data(), N, V, k, temperature,
                                       targets.data(), 0.7);
    EXPECT_NEAR(got, want, 1e-5 * std::abs(want)) << "T " << temperature;
    double worst = 0, scale = 0;
    for (size_t i = 0; i < d64.size(); ++i) {
      worst = std::max(worst, std::abs(double(d32[i]) - d64[i]));
      scale = std::max(scale, std::abs(d64[i]));
    }
    EXPECT_LT(worst / scale, 1e-5) << "T " << temperature;
  }
}

TEST(KdLossesFiniteDifferences, HiddenLossesThroughTheProjection) {
  std::mt19937_64 rng(9);
  const int64_t N = 6, ds = 5, dt = 11;
  Vec hs = random_vec(size_t(N * ds), rng), ht = random_vec(size_t(N * dt), rng);
  Vec W = random_vec(size_t(dt * ds), rng, 0.5), b = random_vec(size_t(dt), rng, 0.1);
  const std::vector<int32_t> targets = {1, 1, -1, 1, 1, 1};
  for (HiddenLossKind kind : {HiddenLossKind::MSE, HiddenLossKind::Cosine}) {
    Vec dhs(hs.size(), 0.0), dW(W.size(), 0.0), db(b.size(), 0.0);
    hidden_loss(dhs.data(), dW.data(), db.data(), hs.data(), ht.data(), W.data(), b.data(), N, ds, dt, kind,
                targets.data(), 1.0);
    auto loss = [&] {
      return hidden_loss<double>(nullptr, nullptr, nullptr, hs.data(), ht.data(), W.data(), b.data(), N, ds, dt, kind,
                                 targets.data(), 1.0);
    };
    EXPECT_LT(gradient_error(hs, dhs, loss), kFdTolerance);
    EXPECT_LT(gradient_error(W, dW, loss), kFdTolerance);
    EXPECT_LT(gradient_error(b, db, loss), kFdTolerance);
  }
}

TEST(KdLossesFiniteDifferences, AttentionLossesWithDifferentHeadCountsOverSeveralSequences) {
  std::mt19937_64 rng(10);
  const int64_t B = 2, Hs = 3, Ht = 4, S = 7;
  Vec scores = random_vec(size_t(B * Hs * S * S), rng), teacher_scores = random_vec(size_t(B * Ht * S * S), rng);
  Vec at(teacher_scores.size());
  causal_softmax_forward(at.data(), teacher_scores.data(), B * Ht, S);
  for (AttentionLossKind kind : {AttentionLossKind::MSE, AttentionLossKind::KL}) {
    auto loss_and_grad = [&](Vec* dscores) {
      Vec as(scores.size()), dA(scores.size(), 0.0);
      causal_softmax_forward(as.data(), scores.data(), B * Hs, S);
      const double loss = attention_loss(dscores ? dA.data() : nullptr, as.data(), at.data(), B, Hs, Ht, S, kind, 1.0);
      if (dscores) causal_softmax_backward(dscores->data(), dA.data(), as.data(), B * Hs, S);
      return loss;
    };
    Vec d(scores.size(), 0.0);
    loss_and_grad(&d);
    EXPECT_LT(gradient_error(scores, d, [&] { return loss_and_grad(nullptr); }), kFdTolerance);
  }
}

TEST(KdLossesBadInput, TeacherVocabularySmallerThanTheStudentsIsRefused) {
  const std::vector<float> zs(10, 0.f), zt(8, 0.f);
  EXPECT_THROW(soft_loss<float>(nullptr, zs.data(), zt.data(), 4, 2, 5, {}, nullptr, 1.0), Error);
  EXPECT_THROW(parse_soft_loss_kind("kl"), Error);
}

}  // namespace
}  // namespace retort::train
