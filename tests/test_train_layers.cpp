// Every training layer's backward against central finite differences in f64 on small random
// shapes (relative L2 error ≤ 1e-6), and the whole model's gradient likewise on tiny random
// Qwen2- and Llama-shaped configs (biases, GQA, llama3 rope, tied embeddings, checkpointing).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "finite_difference.h"
#include "train/layers.h"
#include "train/train_model.h"
#include "util/thread_pool.h"

namespace retort::train {
namespace {

using test::Vec;
using test::gradient_error;
using test::random_vec;


double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}


constexpr double kTolerance = 1e-6;

TEST(TrainGemm, MatchesNaiveProductForEveryTransposeOnAwkwardSizes) {
  std::mt19937_64 rng(1);
  set_thread_count(2);
  for (auto [M, N, K] : {std::tuple{67, 45, 33}, {5, 131, 70}, {129, 3, 200}}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        Vec A = random_vec(size_t(M * K), rng), B = random_vec(size_t(K * N), rng), C = random_vec(size_t(M * N), rng);
        Vec want = C;
        for (int m = 0; m < M; ++m)
          for (int n = 0; n < N; ++n) {
            double s = 0;
            for (int k = 0; k < K; ++k) s += (ta ? A[k * M + m] : A[m * K + k]) * (tb ? B[n * K + k] : B[k * N + n]);
            want[m * N + n] = 0.5 * s + 2.0 * C[m * N + n];
          }
        gemm<double>(ta, tb, M, N, K, 0.5, A.data(), ta ? M : K, B.data(), tb ? K : N, 2.0, C.data(), N);
        for (size_t i = 0; i < C.size(); ++i) ASSERT_NEAR(C[i], want[i], 1e-10) << M << "x" << N << "x" << K;
      }
  }
}

TEST(TrainLayers, EmbeddingBackward) {
  std::mt19937_64 rng(2);
  const int64_t V = 7, C = 5, N = 9;
  std::vector<int32_t> tokens{3, 0, 6, 3, 3, 1, 0, 5, 2};
  Vec wte = random_vec(V * C, rng), R = random_vec(N * C, rng), out(N * C), dwte(V * C, 0.0);
  embedding_backward(dwte.data(), R.data(), tokens.data(), N, C);
  auto loss = [&] { embedding_forward(out.data(), tokens.data(), wte.data(), N, C); return dot(out, R); };
  EXPECT_LE(gradient_error(wte, dwte, loss), kTolerance);
}

TEST(TrainLayers, RmsNormBackward) {
  std::mt19937_64 rng(3);
  const int64_t N = 6, C = 11;
  Vec x = random_vec(N * C, rng), w = random_vec(C, rng), R = random_vec(N * C, rng), out(N * C), rstd(N);
  Vec dx(N * C, 0.0), dw(C, 0.0);
  auto loss = [&] { rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5); return dot(out, R); };
  loss();
  rmsnorm_backward(dx.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
  EXPECT_LE(gradient_error(x, dx, loss), kTolerance);
  EXPECT_LE(gradient_error(w, dw, loss), kTolerance);
}

TEST(TrainLayers, LinearBackwardWithBias) {
  std::mt19937_64 rng(4);
  const int64_t N = 7, C = 9, OC = 5;
  Vec x = random_vec(N * C, rng), w = random_vec(OC * C, rng), b = random_vec(OC, rng), R = random_vec(N * OC, rng);
  Vec out(N * OC), dx(N * C), dw(OC * C, 0.0), db(OC, 0.0);
  auto loss = [&] { linear_forward(out.data(), x.data(), w.data(), b.data(), N, C, OC); return dot(out, R); };
  linear_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), N, C, OC);
  EXPECT_LE(gradient_error(x, dx, loss), kTolerance);
  EXPECT_LE(gradient_error(w, dw, loss), kTolerance);
  EXPECT_LE(gradient_error(b, db, loss), kTolerance);
}

TEST(TrainLayers, RopeBackward) {
  std::mt19937_64 rng(5);
  const int64_t N = 8, T = 4, heads = 3, hd = 6, stride = heads * hd + 5;  // extra columns left alone
  Vec cos(T * hd / 2), sin(T * hd / 2);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < hd / 2; ++i) {
      cos[t * hd / 2 + i] = std::cos(0.7 * double(t) * (i + 1));
      sin[t * hd / 2 + i] = std::sin(0.7 * double(t) * (i + 1));
    }
  Vec x = random_vec(N * stride, rng), R = random_vec(N * stride, rng), dx = R;
  rope_backward(dx.data(), cos.data(), sin.data(), N, T, stride, heads, hd);
  auto loss = [&] {
    Vec y = x;
    rope_forward(y.data(), cos.data(), sin.data(), N, T, stride, heads, hd);
    return dot(y, R);
  };
  EXPECT_LE(gradient_error(x, dx, loss), kTolerance);
}

TEST(TrainLayers, GroupedQueryCausalAttentionBackward) {
  std::mt19937_64 rng(6);
  const AttentionDims d{2, 5, 4, 2, 3};
  const int64_t N = d.B * d.T, S = d.qkv_stride(), O = d.H * d.head_dim;
  Vec qkv = random_vec(N * S, rng), R = random_vec(N * O, rng), out(N * O), att(d.B * d.H * d.T * d.T);
  Vec dqkv(N * S, 7.0);  // overwritten, not accumulated
  auto loss = [&] { attention_forward(out.data(), att.data(), qkv.data(), d); return dot(out, R); };
  loss();
  attention_backward(dqkv.data(), R.data(), qkv.data(), att.data(), d);
  EXPECT_LE(gradient_error(qkv, dqkv, loss), kTolerance);
  // Causality: the first token's output depends on nothing after it.
  for (int64_t j = 1; j < d.T; ++j) EXPECT_EQ(att[j], 0.0);
}

TEST(TrainLayers, SwigluBackward) {
  std::mt19937_64 rng(7);
  const int64_t N = 5, F = 7;
  Vec gu = random_vec(N * 2 * F, rng, 2.0), R = random_vec(N * F, rng), out(N * F), dgu(N * 2 * F);
  auto loss = [&] { swiglu_forward(out.data(), gu.data(), N, F); return dot(out, R); };
  swiglu_backward(dgu.data(), R.data(), gu.data(), N, F);
  EXPECT_LE(gradient_error(gu, dgu, loss), kTolerance);
}

TEST(TrainLayers, CrossEntropyBackwardSkipsIgnoredRows) {
  std::mt19937_64 rng(8);
  const int64_t N = 6, V = 13;
  std::vector<int32_t> targets{3, -1, 12, 0, -1, 7};
  Vec logits = random_vec(N * V, rng, 3.0), losses(N), dlogits(N * V);
  const double scale = 0.37;
  auto loss = [&] {
    EXPECT_EQ(cross_entropy_forward(losses.data(), logits.data(), targets.data(), N, V), 4);
    double s = 0;
    for (double l : losses) s += l;
    return scale * s;
  };
  cross_entropy_backward(dlogits.data(), logits.data(), targets.data(), N, V, scale);
  EXPECT_LE(gradient_error(logits, dlogits, loss), kTolerance);
  for (int64_t v = 0; v < V; ++v) EXPECT_EQ(dlogits[V + v], 0.0);
}

ModelConfig tiny_config(Architecture arch, bool tied) {
  ModelConfig c;
  c.arch = arch;
  c.hidden_size = 12;
  c.intermediate_size = 10;
  c.num_layers = 2;
  c.num_heads = 3;
  c.num_kv_heads = arch == Architecture::Qwen2 ? 1 : 3;
  c.head_dim = 4;
  c.vocab_size = 9;
  c.max_positions = 64;
  c.tie_word_embeddings = tied;
  c.attention_bias = arch == Architecture::Qwen2;
  if (arch == Architecture::Llama) {
    c.rope.theta = 500000;
    c.rope.scaling = RopeScaling::Llama3;
    c.rope.factor = 8;
    c.rope.original_max_positions = 16;  // small, so the smoothing band covers some frequencies
  }
  return c;
}

void check_whole_model(const ModelConfig& config, bool checkpointing,
                       std::vector<int32_t> targets = {4, 8, 0, 2, -1, 3, 7, 5, 6, 1}) {
  TrainModel<double> model(config, 2, 5, {checkpointing});
  std::mt19937_64 rng(9);
  Vec init = random_vec(model.parameter_count(), rng, 0.5);
  std::copy(init.begin(), init.end(), model.params());
  std::vector<int32_t> inputs{1, 4, 8, 0, 2, 3, 3, 7, 5, 6};
  const double counted = double(std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; }));
  auto loss = [&] { return model.forward(inputs.data(), targets.data()).sum / counted; };
  loss();
  model.zero_grad();
  model.backward(1.0 / counted);
  Vec params(model.params(), model.params() + model.parameter_count());
  Vec grads(model.grads(), model.grads() + model.parameter_count());
  auto loss_at = [&] { std::copy(params.begin(), params.end(), model.params()); return loss(); };
  EXPECT_LE(gradient_error(params, grads, loss_at), kTolerance);
}

TEST(TrainModelGradient, QwenShapedWithBiasesAndGqa) { check_whole_model(tiny_config(Architecture::Qwen2, false), false); }
TEST(TrainModelGradient, LlamaShapedWithLlama3Rope) { check_whole_model(tiny_config(Architecture::Llama, false), false); }
TEST(TrainModelGradient, TiedEmbeddings) { check_whole_model(tiny_config(Architecture::Qwen2, true), false); }
TEST(TrainModelGradient, ActivationCheckpointing) { check_whole_model(tiny_config(Architecture::Llama, true), true); }
// Prompt-masked data (loss on a few answer tokens): the LM head runs on the targeted rows only.
TEST(TrainModelGradient, PromptMaskedTargets) {
  check_whole_model(tiny_config(Architecture::Qwen2, false), false, {-1, -1, -1, 2, 5, -1, -1, -1, -1, 1});
}

// With targets the head runs on the targeted rows only; their logits are those of a forward with
// no targets (every row), in the order of logit_rows(), to float rounding (a GEMM over 3 rows may
// sum in another order than one over 10).
TEST(TrainModel, LogitsOnTargetedRowsEqualThoseOfEveryRow) {
  const ModelConfig config = tiny_config(Architecture::Llama, false);
  TrainModel<float> model(config, 2, 5);
  std::mt19937_64 rng(12);
  Vec init = random_vec(model.parameter_count(), rng, 0.5);
  std::copy(init.begin(), init.end(), model.params());
  std::vector<int32_t> inputs{1, 4, 8, 0, 2, 3, 3, 7, 5, 6}, targets{-1, -1, 0, -1, -1, -1, 7, 5, -1, -1};
  model.forward(inputs.data(), nullptr);
  const int64_t V = config.vocab_size;
  ASSERT_EQ(model.logit_rows().size(), 10u);
  std::vector<float> every_row(model.logits(), model.logits() + 10 * V);
  const LossSum loss = model.forward(inputs.data(), targets.data());
  EXPECT_EQ(loss.targets, 3);
  ASSERT_EQ(model.logit_rows(), (std::vector<int64_t>{2, 6, 7}));
  EXPECT_EQ(model.logit_targets(), (std::vector<int32_t>{0, 7, 5}));
  for (size_t i = 0; i < 3; ++i)
    for (int64_t v = 0; v < V; ++v)
      ASSERT_NEAR(model.logits()[int64_t(i) * V + v], every_row[size_t(model.logit_rows()[i] * V + v)], 1e-5)
          << i << " " << v;
  // A batch with no targets at all has no loss and no gradient.
  std::vector<int32_t> none(10, -1);
  EXPECT_EQ(model.forward(inputs.data(), none.data()).targets, 0);
  model.zero_grad();
  model.backward(1.0);
  for (size_t i = 0; i < model.parameter_count(); ++i) ASSERT_EQ(model.grads()[i], 0.0f) << i;
}

TEST(TrainModelGradient, CheckpointingGivesIdenticalGradients) {
  const ModelConfig config = tiny_config(Architecture::Qwen2, false);
  TrainModel<float> plain(config, 2, 5), recomputing(config, 2, 5, {true});
  std::mt19937_64 rng(10);
  Vec init = random_vec(plain.parameter_count(), rng, 0.5);
  for (size_t i = 0; i < init.size(); ++i) plain.params()[i] = recomputing.params()[i] = float(init[i]);
  std::vector<int32_t> inputs{1, 4, 8, 0, 2, 3, 3, 7, 5, 6}, targets{4, 8, 0, 2, 1, 3, 7, 5, 6, 1};
  for (auto* m : {&plain, &recomputing}) {
    m->forward(inputs.data(), targets.data());
    m->zero_grad();
    m->backward(0.1);
  }
  for (size_t i = 0; i < plain.parameter_count(); ++i) ASSERT_EQ(plain.grads()[i], recomputing.grads()[i]) << i;
  EXPECT_LT(recomputing.activation_bytes(), plain.activation_bytes());
}

// distributed.bucket_mb sums a range over ranks as soon as the backward announces it: every announced
// range must already hold its final gradient (compared with the gradients after the backward), and
// the ranges cover every parameter exactly once, the head's first and the embedding's last.
void check_gradient_announcements(const ModelConfig& config, bool checkpointing) {
  TrainModel<float> model(config, 2, 5, {checkpointing});
  std::mt19937_64 rng(13);
  Vec init = random_vec(model.parameter_count(), rng, 0.5);
  std::copy(init.begin(), init.end(), model.params());
  std::vector<int32_t> inputs{1, 4, 8, 0, 2, 3, 3, 7, 5, 6}, targets{4, 8, 0, 2, 1, 3, 7, 5, 6, 1};
  struct Announced {
    size_t offset;
    std::vector<float> values;
  };
  std::vector<Announced> announced;
  model.set_gradient_ready([&](size_t offset, size_t count) {
    announced.push_back({offset, std::vector<float>(model.grads() + offset, model.grads() + offset + count)});
  });
  model.forward(inputs.data(), targets.data());
  model.zero_grad();
  model.backward(0.1);
  std::vector<int> times(model.parameter_count(), 0);
  for (const Announced& a : announced)
    for (size_t i = 0; i < a.values.size(); ++i) {
      ++times[a.offset + i];
      ASSERT_EQ(a.values[i], model.grads()[a.offset + i]) << "changed after its announcement: element " << a.offset + i;
    }
  for (size_t i = 0; i < times.size(); ++i) ASSERT_EQ(times[i], 1) << "element " << i;
  const ParameterLayout& layout = model.layout();
  const TensorRole first = config.tie_word_embeddings ? TensorRole::OutputNorm : TensorRole::LmHead;
  EXPECT_EQ(announced.front().offset, layout.find(first, -1).offset);
  EXPECT_EQ(announced.back().offset, layout.find(TensorRole::TokenEmbedding, -1).offset);
}

TEST(TrainModelGradient, AnnouncedRangesAreFinalAndCoverEveryParameterOnce) {
  check_gradient_announcements(tiny_config(Architecture::Qwen2, false), false);
  check_gradient_announcements(tiny_config(Architecture::Llama, true), false);
  check_gradient_announcements(tiny_config(Architecture::Qwen2, true), true);
}

}  // namespace
}  // namespace retort::train
