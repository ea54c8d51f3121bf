// Distillation through the whole student: the combined objective's gradient (hard CE, soft KL/JSD
// with a larger teacher vocabulary and chunked teacher logits, hidden-state MSE/cosine through the
// learned projections, attention transfer with different head counts) against central finite
// differences in f64; student initialisation from the teacher; config and bad-input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <random>

#include "finite_difference.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "train/distill.h"
#include "train/student_init.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort::train {
namespace {

using test::Vec;
using test::gradient_error;
using test::random_vec;

ModelConfig tiny(int64_t layers, int64_t hidden, int64_t heads, int64_t kv, int64_t vocab) {
  ModelConfig c;
  c.arch = Architecture::Qwen2;
  c.hidden_size = hidden;
  c.intermediate_size = 10;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv;
  c.head_dim = 4;
  c.vocab_size = vocab;
  c.max_positions = 64;
  c.attention_bias = true;
  return c;
}


DistillConfig objective_config(SoftLossKind soft, HiddenLossKind hidden, AttentionLossKind attention) {
  DistillConfig c;
  c.soft = {soft, 2.0, 0.3};
  c.chunk_rows = 3;  // several chunks, the last one short
  c.hidden_loss = hidden;
  c.hidden_map = {{1, 2}, {2, 3}, {0, 0}};
  c.attention_loss = attention;
  c.attention_map = {{0, 1}, {1, 2}};
  return c;
}

void check_objective_gradient(const DistillConfig& config) {
  set_thread_count(1);  // tiny shapes: handing them to workers costs more than the arithmetic
  const ModelConfig sc = tiny(2, 8, 2, 1, 11), tc = tiny(3, 12, 4, 2, 14);  // teacher: larger padded vocabulary
  const int64_t B = 2, T = 5;
  TrainModel<double> student(sc, B, T), teacher(tc, B, T, {false, false});
  DistillObjective<double> objective(config, student, teacher);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0.0, 0.5);
  for (size_t i = 0; i < student.parameter_count(); ++i) student.params()[i] = normal(rng);
  for (size_t i = 0; i < teacher.parameter_count(); ++i) teacher.params()[i] = normal(rng);
  objective.init_projections(5);
  const std::vector<int32_t> inputs{1, 4, 8, 0, 2, 3, 3, 7, 5, 10}, targets{4, 8, 0, 2, -1, 3, 7, 5, 10, 1};
  const LossWeights w{0.7, 0.9, 1.3, 2.1};
  const double ts = 1.0 / 9, ss = 1.0 / 2;
  auto total = [&](const LossTerms& t) {
    return w.hard * t.hard * ts + w.soft * t.soft * ts + w.hidden * t.hidden * ts + w.attention * t.attention * ss;
  };
  student.zero_grad();
  const size_t P = objective.projection_layout().total;
  std::fill_n(objective.projection_grads(), P, 0.0);
  const LossTerms terms = objective.run(inputs.data(), targets.data(), w, ts, ss, true);
  EXPECT_GT(terms.soft, 0.0);
  EXPECT_GT(terms.hidden, 0.0);
  EXPECT_GT(terms.attention, 0.0);
  Vec params(student.params(), student.params() + student.parameter_count());
  Vec grads(student.grads(), student.grads() + student.parameter_count());
  Vec proj(objective.projections(), objective.projections() + P);
  Vec dproj(objective.projection_grads(), objective.projection_grads() + P);
  auto loss_at = [&] {
    std::copy(params.begin(), params.end(), student.params());
    std::copy(proj.begin(), proj.end(), objective.projections());
    return total(objective.run(inputs.data(), targets.data(), w, ts, ss, false));
  };
  EXPECT_NEAR(loss_at(), total(terms), 1e-12);
  EXPECT_LE(gradient_error(params, grads, loss_at), 1e-6) << "student parameters";
  EXPECT_LE(gradient_error(proj, dproj, loss_at), 1e-6) << "projections";
}

TEST(DistillObjective, ForwardKlMseAndAttentionKlGradientMatchesFiniteDifferences) {
  check_objective_gradient(objective_config(SoftLossKind::ForwardKL, HiddenLossKind::MSE, AttentionLossKind::KL));
}

TEST(DistillObjective, JsdCosineAndAttentionMseGradientMatchesFiniteDifferences) {
  check_objective_gradient(objective_config(SoftLossKind::JSD, HiddenLossKind::Cosine, AttentionLossKind::MSE));
}

TEST(DistillObjective, ReverseKlWithTopKTeacherGradientMatchesFiniteDifferences) {
  DistillConfig c = objective_config(SoftLossKind::ForwardKL, HiddenLossKind::MSE, AttentionLossKind::KL);
  c.top_k = 4;
  check_objective_gradient(c);
  check_objective_gradient(objective_config(SoftLossKind::ReverseKL, HiddenLossKind::MSE, AttentionLossKind::MSE));
}

TEST(DistillBadInput, LayerMapsOutOfRangeAreRefusedNamingTheValidRange) {
  const ModelConfig sc = tiny(2, 8, 2, 1, 11), tc = tiny(3, 12, 4, 2, 14);
  DistillConfig c;
  c.hidden_map = {{3, 1}};
  try {
    check_layer_maps(c, sc, tc, false);
    FAIL() << "accepted student hidden state 3 of a 2-layer student";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden states 0 (embeddings) to 2"), std::string::npos) << e.what();
  }
  c.hidden_map = {{1, 4}};
  EXPECT_THROW(check_layer_maps(c, sc, tc, false), Error);
  c.hidden_map = {};
  c.attention_map = {{0, 3}};
  EXPECT_THROW(check_layer_maps(c, sc, tc, false), Error);
  c.attention_map = {{-1, 0}};
  EXPECT_THROW(check_layer_maps(c, sc, tc, false), Error);
  c.attention_map = {{1, 2}};
  c.w_attention = 1;
  EXPECT_NO_THROW(check_layer_maps(c, sc, tc, false));
  EXPECT_THROW(check_layer_maps(c, sc, tc, true), Error) << "attention maps need the probabilities of every layer";
}

TEST(DistillBadInput, TeacherWithSmallerVocabularyIsRefused) {
  EXPECT_THROW(check_vocabularies(tiny(2, 8, 2, 1, 11), tiny(2, 8, 2, 1, 12)), Error);
  EXPECT_NO_THROW(check_vocabularies(tiny(2, 8, 2, 1, 12), tiny(2, 8, 2, 1, 11)));
}

TEST(DistillBadInput, DifferentTokenizersAreRefusedSayingWhy) {
  const std::string qwen = test::cached_tokenizer("qwen"), llama = test::cached_tokenizer("llama3");
  RETORT_REQUIRE_PATH(qwen, "the Qwen tokenizer (.cache/tokenizers/qwen)");
  RETORT_REQUIRE_PATH(llama, "the Llama 3 tokenizer (.cache/tokenizers/llama3)");
  auto a = Tokenizer::load(qwen), b = Tokenizer::load(llama);
  EXPECT_NO_THROW(check_same_tokenizer(*a, *Tokenizer::load(qwen), "qwen", "qwen again"));
  try {
    check_same_tokenizer(*a, *b, "qwen", "llama3");
    FAIL() << "accepted two different tokenizers";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must share one tokenizer"), std::string::npos) << e.what();
  }
}

TEST(DistillConfigParse, SectionsAreReadAndUnknownKeysOrBadCombinationsNamed) {
  const std::string base = R"(
model: {config: student.json}
data: {train: train.txt, format: text}
steps: 3
teacher: {model: teacher}
distill:
  weights: {hard: 0.2, soft: 0.8, hidden: 1.0}
  weighting: soft_to_hard
  soft: {loss: jsd, temperature: 3, beta: 0.4}
  hidden: {loss: cosine, layer_map: [[1, 2], [2, 4]]}
)";
  std::vector<ConfigEntry> entries;
  const DistillConfig c = parse_distill_config(base, "t.yaml", "/cfg", &entries);
  EXPECT_EQ(c.train.steps, 3);
  EXPECT_EQ(c.teacher_model, "/cfg/teacher");
  EXPECT_EQ(c.soft.kind, SoftLossKind::JSD);
  EXPECT_DOUBLE_EQ(c.soft.temperature, 3);
  EXPECT_EQ(c.weighting, Weighting::SoftToHard);
  ASSERT_EQ(c.hidden_map.size(), 2u);
  EXPECT_EQ(c.hidden_map[1].teacher, 4);
  EXPECT_TRUE(std::any_of(entries.begin(), entries.end(), [](const ConfigEntry& e) {
    return e.path == "distill.soft.temperature" && e.value == "3" && !e.from_default;
  }));
  auto error_of = [&](const std::string& yaml) {
    try {
      parse_distill_config(yaml, "t.yaml", "/cfg");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of(base + "  temprature: 2\n").find("unknown key 'distill.temprature'"), std::string::npos);
  EXPECT_NE(error_of(base + "optimizr: {lr: 1}\n").find("unknown key 'optimizr'"), std::string::npos);
  EXPECT_NE(error_of(base + "  chunk_rows: many\n").find("'distill.chunk_rows' must be a number"), std::string::npos);
  std::string flat_map = base;
  flat_map.replace(flat_map.find("[[1, 2], [2, 4]]"), 16, "[1, 2]");
  EXPECT_NE(error_of(flat_map).find("[student, teacher]"), std::string::npos);
  std::string topk = base;
  topk.replace(topk.find("beta: 0.4"), 9, "top_k: 5");
  EXPECT_NE(error_of(topk).find("forward_kl only"), std::string::npos);
  std::string from_teacher = base + "student: {from_teacher: true, every: 2}\n";
  EXPECT_NE(error_of(from_teacher).find("leave out model.init"), std::string::npos);
}

TEST(StudentInit, KeepsTheChosenTeacherLayersAndTheStrongestMlpUnits) {
  const std::string teacher = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(teacher, "the tiny-r1-qwen fixture");
  const std::string out = (std::filesystem::temp_directory_path() / "retort-test-student-init").string();
  StudentInit init;
  init.from_teacher = true;
  init.layers = {0, 2};
  init.intermediate_size = 100;
  write_student_from_teacher(teacher, init, out);
  const ModelConfig tc = load_hf_config(teacher + "/config.json"), sc = load_hf_config(out + "/config.json");
  EXPECT_EQ(sc.num_layers, 2);
  EXPECT_EQ(sc.intermediate_size, 100);
  EXPECT_EQ(sc.hidden_size, tc.hidden_size);
  const ParameterLayout tl = parameter_layout(tc), sl = parameter_layout(sc);
  std::vector<float> tp(tl.total), sp(sl.total);
  load_parameters(tl, *Checkpoint::open_directory(teacher), tp.data());
  load_parameters(sl, *Checkpoint::open_directory(out), sp.data());
  auto tensor = [](const ParameterLayout& l, std::vector<float>& p, TensorRole role, int layer) {
    const ParameterInfo& i = l.find(role, layer);
    return std::vector<float>(p.begin() + long(i.offset), p.begin() + long(i.offset + i.count));
  };
  EXPECT_EQ(tensor(sl, sp, TensorRole::Wq, 1), tensor(tl, tp, TensorRole::Wq, 2)) << "student layer 1 is teacher layer 2";
  EXPECT_EQ(tensor(sl, sp, TensorRole::TokenEmbedding, -1), tensor(tl, tp, TensorRole::TokenEmbedding, -1));
  // The kept MLP units are the strongest, in order: student row j of gate is teacher row units[j].
  const int64_t C = tc.hidden_size, F = tc.intermediate_size;
  const auto gate = tensor(tl, tp, TensorRole::WGate, 2), up = tensor(tl, tp, TensorRole::WUp, 2),
             down = tensor(tl, tp, TensorRole::WDown, 2);
  const auto units = strongest_mlp_units(gate.data(), up.data(), down.data(), F, C, 100);
  const auto sgate = tensor(sl, sp, TensorRole::WGate, 1), sdown = tensor(sl, sp, TensorRole::WDown, 1);
  for (int64_t j : {0, 57, 99}) {
    EXPECT_EQ(sgate[size_t(j * C + 3)], gate[size_t(units[size_t(j)] * C + 3)]);
    EXPECT_EQ(sdown[size_t(5 * 100 + j)], down[size_t(5 * F + units[size_t(j)])]);
  }
  init.layers = {0, 3};
  EXPECT_THROW(write_student_from_teacher(teacher, init, out), Error) << "teacher layer 3 of 3";
  init.layers = {2, 1};
  EXPECT_THROW(write_student_from_teacher(teacher, init, out), Error) << "decreasing";
  std::filesystem::remove_all(out);
}

}  // namespace
}  // namespace retort::train
