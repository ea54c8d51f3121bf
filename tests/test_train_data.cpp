// Training data: each format's examples and loss masks, parse errors with line numbers, the token
// cache, the seeded split and batch order, and gradient accumulation equal to one big batch.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/optimizer.h"
#include "train/train_model.h"
#include "util/error.h"

namespace retort::train {
namespace {

namespace fs = std::filesystem;

class TrainData : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("retort-data-{}-{}", getpid(),
                                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return (dir_ / name).string();
  }
  const Tokenizer& tokenizer() {
    if (!tokenizer_) tokenizer_ = Tokenizer::load(test::shared_path("fixtures/tiny-r1-qwen"));
    return *tokenizer_;
  }
  std::string error_of(const std::function<void()>& body) {
    try {
      body();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }

  fs::path dir_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

// The tokens a mask marks, decoded.
std::string trained_text(const Tokenizer& tok, const Example& e) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < e.tokens.size(); ++i)
    if (e.loss_mask[i]) ids.push_back(e.tokens[i]);
  return tok.decode(ids);
}

TEST_F(TrainData, TokenIdsOnePerLineWithLineNumbersInErrors) {
  DataOptions options;
  auto examples = load_examples(write("ids.txt", "1 2 3\n\n4\t5  6 7\n9\n"), options, nullptr, 10);
  ASSERT_EQ(examples.size(), 2u);  // the blank line is skipped, the one-token line has nothing to predict
  EXPECT_EQ(examples[1].tokens, (std::vector<int32_t>{4, 5, 6, 7}));
  EXPECT_NE(error_of([&] { load_examples(write("bad.txt", "1 2\n3 -4\n"), options, nullptr, 10); }).find("bad.txt:2: '-4'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_examples(write("big.txt", "1 2\n3 12\n"), options, nullptr, 10); }).find("token id 12"),
            std::string::npos);
}

TEST_F(TrainData, JsonlPromptResponseTrainsOnTheResponseOnly) {
  const std::string fixture = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(fixture, "fixture tiny-r1-qwen");
  DataOptions options;
  options.format = DataFormat::Jsonl;
  auto examples = load_examples(write("pr.jsonl", R"({"prompt": "What is 2+2?", "response": " four"})"
                                                  "\n\n" R"({"prompt": "Hi", "response": " hello there"})" "\n"),
                                options, &tokenizer(), 512);
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(trained_text(tokenizer(), examples[0]), " four<|eot|>");
  EXPECT_EQ(tokenizer().decode(examples[1].tokens), "Hi hello there<|eot|>");
  EXPECT_NE(error_of([&] { load_examples(write("b.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{oops\n"), options, &tokenizer(), 512); })
                .find("b.jsonl:2: not valid JSON"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_examples(write("c.jsonl", "{\"prompt\": \"a\"}\n"), options, &tokenizer(), 512); })
                .find("c.jsonl:1: expected an object with string fields \"prompt\" and \"response\""),
            std::string::npos);
}

// The text of each run of tokens with the same mask, in order: "+" trained, "-" context only.
std::vector<std::string> masked_runs(const Tokenizer& tok, const Example& e) {
  std::vector<std::string> runs;
  for (size_t i = 0; i < e.tokens.size();) {
    size_t j = i;
    while (j < e.tokens.size() && e.loss_mask[j] == e.loss_mask[i]) ++j;
    runs.push_back((e.loss_mask[i] ? "+" : "-") +
                   tok.decode(std::vector<int32_t>(e.tokens.begin() + ptrdiff_t(i), e.tokens.begin() + ptrdiff_t(j))));
    i = j;
  }
  return runs;
}

TEST_F(TrainData, ChatMessagesTrainOnEveryAssistantTurn) {
  RETORT_REQUIRE_PATH(test::shared_path("fixtures/tiny-r1-qwen"), "fixture tiny-r1-qwen");
  DataOptions options;
  options.format = DataFormat::Jsonl;
  options.chat_template = "chatml";
  const std::string conversation =
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, )"
      R"({"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Name?"}, )"
      R"({"role": "assistant", "content": "Retort."}]})" "\n";
  auto examples = load_examples(write("chat.jsonl", conversation), options, &tokenizer(), 512);
  ASSERT_EQ(examples.size(), 1u);
  EXPECT_EQ(masked_runs(tokenizer(), examples[0]),
            (std::vector<std::string>{"-<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                      "<|im_start|>assistant\n",
                                      "+Hello!<|im_end|>\n",
                                      "-<|im_start|>user\nName?<|im_end|>\n<|im_start|>assistant\n",
                                      "+Retort.<|im_end|>\n"}));
  EXPECT_NE(error_of([&] {
              load_examples(write("u.jsonl", R"({"messages": [{"role": "user", "content": "Hi"}]})" "\n"), options,
                            &tokenizer(), 512);
            }).find("u.jsonl:1: the conversation must end with an assistant message"),
            std::string::npos);
}

TEST_F(TrainData, ChatTurnsFollowATemplateThatRewritesPastReplies) {
  // DeepSeek-R1's template drops the reasoning of assistant turns: only what it renders is trained.
  RETORT_REQUIRE_PATH(test::shared_path("fixtures/tiny-r1-qwen"), "fixture tiny-r1-qwen");
  DataOptions options;
  options.format = DataFormat::Jsonl;
  options.chat_template = "deepseek-r1";
  auto examples = load_examples(
      write("r1.jsonl", R"({"messages": [{"role": "user", "content": "2+2?"}, )"
                        R"({"role": "assistant", "content": "<think>add</think>4"}, {"role": "user", "content": "3+3?"}, )"
                        R"({"role": "assistant", "content": "6"}]})" "\n"),
      options, &tokenizer(), 512);
  ASSERT_EQ(examples.size(), 1u);
  const auto runs = masked_runs(tokenizer(), examples[0]);
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(runs[1], "+4<｜end▁of▁sentence｜>");
  EXPECT_EQ(runs[2].substr(0, 1), "-");
  EXPECT_NE(runs[2].find("3+3?"), std::string::npos);
  EXPECT_EQ(runs[3], "+6<｜end▁of▁sentence｜>");
}

TEST_F(TrainData, CsvTextLabelBecomesPromptAndLabel) {
  RETORT_REQUIRE_PATH(test::shared_path("fixtures/tiny-r1-qwen"), "fixture tiny-r1-qwen");
  DataOptions options;
  options.format = DataFormat::Csv;
  auto examples = load_examples(write("c.csv", "text,label\n\"card, \"\"lost\"\"\nyesterday\",lost_card\nhello,greeting\n"),
                                options, &tokenizer(), 512);
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(tokenizer().decode(examples[0].tokens), "card, \"lost\"\nyesterday\nLabel: lost_card<|eot|>");
  EXPECT_EQ(trained_text(tokenizer(), examples[0]), " lost_card<|eot|>");
  EXPECT_NE(error_of([&] { load_examples(write("d.csv", "text,label\na,b\nc,d,e\n"), options, &tokenizer(), 512); })
                .find("d.csv:3: 3 fields, the header has 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_examples(write("e.csv", "sentence,label\na,b\n"), options, &tokenizer(), 512); })
                .find("no 'text' column"),
            std::string::npos);
}

TEST_F(TrainData, TextIsPackedIntoOverlappingWindowsAndCached) {
  RETORT_REQUIRE_PATH(test::shared_path("fixtures/tiny-r1-qwen"), "fixture tiny-r1-qwen");
  DataOptions options;
  options.format = DataFormat::Text;
  options.seq_len = 8;
  options.cache_dir = (dir_ / "cache").string();
  const std::string text = "It was the best of times, it was the worst of times, it was the age of wisdom.";
  const auto path = write("t.txt", text);
  auto examples = load_examples(path, options, &tokenizer(), 512);
  const auto ids = tokenizer().encode(text, true);
  ASSERT_EQ(examples.size(), (ids.size() - 2) / 8 + 1);
  EXPECT_EQ(examples[0].tokens.size(), 9u);
  EXPECT_EQ(examples[1].tokens.front(), examples[0].tokens.back());  // windows overlap by one token
  ASSERT_EQ(std::distance(fs::directory_iterator(dir_ / "cache"), fs::directory_iterator()), 1);
  auto cached = load_examples(path, options, nullptr, 512);  // no tokenizer needed: it comes from the cache
  ASSERT_EQ(cached.size(), examples.size());
  for (size_t i = 0; i < cached.size(); ++i) EXPECT_EQ(cached[i].tokens, examples[i].tokens);
}

TEST_F(TrainData, SplitAndBatchOrderAreDeterministicAndResumable) {
  std::vector<Example> all;
  for (int32_t i = 0; i < 50; ++i) all.push_back({{i, i + 1, i + 2}, {1, 1, 0}});
  DataOptions options;
  options.val_fraction = 0.2;
  options.seed = 11;
  std::vector<Example> train, val, train2, val2;
  split_examples(all, options, train, val);
  split_examples(all, options, train2, val2);
  ASSERT_EQ(val.size(), 10u);
  ASSERT_EQ(train.size(), 40u);
  for (size_t i = 0; i < val.size(); ++i) EXPECT_EQ(val[i].tokens, val2[i].tokens);

  BatchLoader loader(train, 3, 4, 5, true);
  std::vector<int32_t> in, tg;
  for (int i = 0; i < 20; ++i) loader.next(in, tg);  // crosses an epoch boundary
  const DataPosition saved = loader.position();
  EXPECT_EQ(saved.epoch, 1);
  std::vector<std::vector<int32_t>> expected;
  for (int i = 0; i < 5; ++i) { loader.next(in, tg); expected.push_back(in); }
  BatchLoader again(train, 3, 4, 5, true);
  again.seek(saved);
  for (int i = 0; i < 5; ++i) { again.next(in, tg); EXPECT_EQ(in, expected[i]); }
  // Padding and masked tokens are never targets: [a, a+1, a+2] with mask {1,1,0} → targets {a+1, −1, −1, −1}.
  EXPECT_EQ(tg[1], -1);
  EXPECT_EQ(tg[2], -1);
  EXPECT_EQ(tg[0], in[0] + 1);
  EXPECT_EQ(in[3], 0);
}

// k micro-batches scaled by the step's total target count give the gradient of one batch of all of them.
TEST(TrainAccumulation, TwoMicroBatchesEqualOneBatch) {
  ModelConfig c;
  c.hidden_size = 16; c.intermediate_size = 24; c.num_layers = 2; c.num_heads = 4; c.num_kv_heads = 2;
  c.head_dim = 4; c.vocab_size = 32; c.max_positions = 64; c.attention_bias = true;
  TrainModel<double> whole(c, 2, 6), micro(c, 1, 6);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0, 0.3);
  for (size_t i = 0; i < whole.parameter_count(); ++i) whole.params()[i] = micro.params()[i] = normal(rng);
  std::vector<int32_t> inputs{1, 5, 9, 2, 7, 3, 30, 4, 4, 8, 16, 0}, targets{5, 9, 2, 7, 3, -1, 4, 4, 8, 16, 0, 1};
  whole.zero_grad();
  whole.forward(inputs.data(), targets.data());
  whole.backward(1.0 / 11);
  micro.zero_grad();
  for (int b = 0; b < 2; ++b) {
    micro.forward(inputs.data() + 6 * b, targets.data() + 6 * b);
    micro.backward(1.0 / 11);
  }
  for (size_t i = 0; i < whole.parameter_count(); ++i) ASSERT_NEAR(whole.grads()[i], micro.grads()[i], 1e-12) << i;
}

}  // namespace
}  // namespace retort::train

namespace retort::train {
namespace {

TEST(TrainSchedule, WarmupThenCosineOrLinearDecay) {
  LrSchedule cosine{1e-3, 4, 14, LrDecay::Cosine, 1e-4};
  EXPECT_DOUBLE_EQ(cosine.at(0), 1e-3 / 4);
  EXPECT_DOUBLE_EQ(cosine.at(3), 1e-3);
  EXPECT_DOUBLE_EQ(cosine.at(4), 1e-3);
  EXPECT_NEAR(cosine.at(9), 1e-4 + 0.9e-3 * 0.5, 1e-15);  // half way: cos(π/2) = 0
  EXPECT_NEAR(cosine.at(14), 1e-4, 1e-15);
  EXPECT_NEAR(cosine.at(20), 1e-4, 1e-15);  // stays at the floor past the end
  LrSchedule linear{2e-3, 0, 10, LrDecay::Linear, 0};
  EXPECT_DOUBLE_EQ(linear.at(0), 2e-3);
  EXPECT_NEAR(linear.at(5), 1e-3, 1e-15);
  LrSchedule constant{5e-5, 2, 10, LrDecay::Constant, 0};
  EXPECT_DOUBLE_EQ(constant.at(1), 5e-5);
  EXPECT_DOUBLE_EQ(constant.at(9), 5e-5);
  EXPECT_THROW(parse_lr_decay("exponential"), Error);
}

TEST(TrainSchedule, ClipByGlobalNorm) {
  std::vector<float> grads(100001, 0.0f);
  grads[0] = 3.0f;
  grads[100000] = 4.0f;
  EXPECT_NEAR(clip_grad_norm(grads.data(), grads.size(), 10.0), 5.0, 1e-6);  // under the limit: untouched
  EXPECT_EQ(grads[0], 3.0f);
  EXPECT_NEAR(clip_grad_norm(grads.data(), grads.size(), 1.0), 5.0, 1e-6);
  EXPECT_NEAR(global_grad_norm(grads.data(), grads.size()), 1.0, 1e-6);
  EXPECT_NEAR(grads[0] / grads[100000], 0.75, 1e-6);  // direction kept
}

}  // namespace
}  // namespace retort::train
