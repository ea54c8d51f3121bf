// Structured output: the byte matcher compiled from JSON schemas, json_object and choices accepts
// exactly the replies that parse and validate (hand-picked cases, and random walks through the
// grammar whose every complete reply is parsed and validated); the token constraint over a real
// vocabulary lets random logits produce only valid replies; its cost per token on the 151,665-token
// Qwen2 vocabulary is printed.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/output_grammar.h"
#include "engine/token_constraint.h"
#include "test_support.h"
#include "util/error.h"

namespace retort {
namespace {

using json = nlohmann::json;

// Whether `text` is a whole reply of the grammar.
bool accepts(const OutputGrammar& grammar, std::string_view text) {
  GrammarMatcher matcher(grammar);
  return matcher.feed(text) && matcher.complete();
}

const json kPerson = json::parse(R"({
  "type": "object",
  "properties": {
    "name": {"type": "string"}, "age": {"type": "integer"}, "ok": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    "scores": {"type": "array", "items": {"type": "object", "properties": {"v": {"type": "number"}},
               "required": ["v"]}, "minItems": 1},
    "color": {"enum": ["red", "green", 3, null]}
  },
  "required": ["name", "age"]
})");

TEST(OutputGrammar, SchemaAcceptsValidRepliesInNameOrder) {
  const auto g = OutputGrammar::json_schema(kPerson);
  EXPECT_TRUE(accepts(*g, R"({"age":30,"name":"Al"})"));
  EXPECT_TRUE(accepts(*g, "{\n  \"age\": -2,\n  \"color\": 3,\n  \"name\": \"a\\\"b\\u00e9\",\n  \"ok\": true\n}"));
  EXPECT_TRUE(accepts(*g, R"({"age":0,"name":"","scores":[{"v":-0.5e+10},{"v":1}],"tags":["x","y","z"]})"));
  EXPECT_TRUE(accepts(*g, R"({"age":7,"color":null,"name":"é"})"));
}

TEST(OutputGrammar, SchemaRefusesWhatDoesNotValidate) {
  const auto g = OutputGrammar::json_schema(kPerson);
  for (const char* bad : {R"({"name":"Al"})",                      // required age missing
                          R"({"age":"30","name":"Al"})",           // wrong type
                          R"({"age":3.5,"name":"Al"})",            // not an integer
                          R"({"age":01,"name":"Al"})",             // leading zero
                          R"({"age":1,"name":"Al","extra":1})",    // unknown property
                          R"({"age":1,"name":"Al"} x)",            // trailing bytes
                          R"({"age":1,"name":"Al","tags":["a","b","c","d"]})",  // maxItems
                          R"({"age":1,"name":"Al","scores":[]})",  // minItems
                          R"({"age":1,"color":"blue","name":"Al"})",  // not in the enum
                          R"({"age":1,"name":"A\x"})",             // bad escape
                          "{\"age\":1,\"name\":\"A\nB\"}",         // raw control character
                          R"({"age":1,"name":"Al",})",             // trailing comma
                          R"([1])"}) {
    EXPECT_FALSE(accepts(*g, bad)) << bad;
  }
  EXPECT_FALSE(accepts(*g, R"({"age":1)")) << "incomplete";
  EXPECT_FALSE(accepts(*g, "{" + std::string(33, ' ') + R"("age":1,"name":"x"})")) << "33 spaces in a row";
  EXPECT_FALSE(accepts(*g, R"({"age":1234567890123456789012345,"name":"x"})")) << "25 digits";
}

TEST(OutputGrammar, JsonObjectAndChoices) {
  const auto object = OutputGrammar::any_json_object();
  EXPECT_TRUE(accepts(*object, R"({"a": [1, {"b": null}, true, "s", -2.5E3], "c": {}})"));
  EXPECT_TRUE(accepts(*object, " {}"));
  for (const char* bad : {"[1]", R"({"a":})", R"({"a" 1})", R"({a:1})", "{} {}", "\"x\""})
    EXPECT_FALSE(accepts(*object, bad)) << bad;

  const auto labels = OutputGrammar::choice({"card_arrival", "card", "cash_withdrawal"});
  EXPECT_TRUE(accepts(*labels, "card"));
  EXPECT_TRUE(accepts(*labels, "card_arrival"));
  EXPECT_FALSE(accepts(*labels, "car"));
  EXPECT_FALSE(accepts(*labels, "cat"));
  EXPECT_FALSE(accepts(*labels, "cards"));
  GrammarMatcher partial(*labels);
  ASSERT_TRUE(partial.feed("card"));
  EXPECT_TRUE(partial.complete());
  EXPECT_FALSE(partial.finished()) << "card_arrival may still follow";
  ASSERT_TRUE(partial.feed("_arrival"));
  EXPECT_TRUE(partial.finished());
}

TEST(OutputGrammar, UnsupportedKeywordsAreRefusedByName) {
  for (const char* schema : {R"({"type":"string","pattern":"^a"})", R"({"anyOf":[{"type":"string"}]})",
                             R"({"type":["string","null"]})", R"({"type":"object","properties":{"a":{}},
                             "additionalProperties":true})"}) {
    try {
      OutputGrammar::json_schema(json::parse(schema));
      ADD_FAILURE() << schema << " was accepted";
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::InvalidInput);
      EXPECT_NE(std::string(error.what()).find("response_format"), std::string::npos) << error.what();
    }
  }
  try {
    OutputGrammar::json_schema(json::parse(R"({"type":"string","pattern":"^a"})"));
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("'pattern'"), std::string::npos) << error.what();
  }
}

// A random reply: from the start, repeatedly one random byte among those the matcher takes (ending
// as soon as it may, with growing probability), so every path the grammar allows can be drawn.
std::string random_reply(const OutputGrammar& grammar, std::mt19937& rng) {
  GrammarMatcher matcher(grammar);
  std::string text;
  for (int steps = 0; steps < 4000; ++steps) {
    if (matcher.finished() || (matcher.complete() && int(rng() % 100) < 5 + steps / 20)) return text;
    std::vector<uint8_t> options;
    for (int b = 0; b < 256; ++b) {
      GrammarMatcher next = matcher;
      if (next.feed(uint8_t(b))) options.push_back(uint8_t(b));
    }
    if (options.empty()) break;
    // Closing bytes more often than not once the reply is long, so it ends.
    uint8_t byte = options[rng() % options.size()];
    for (uint8_t closer : {uint8_t('}'), uint8_t(']'), uint8_t('"')})
      if (text.size() > 40 && std::find(options.begin(), options.end(), closer) != options.end() && rng() % 2) byte = closer;
    matcher.feed(byte);
    text += char(byte);
  }
  ADD_FAILURE() << "no complete reply after 4000 bytes: " << text;
  return text;
}

// The supported subset of JSON Schema, checked directly.
bool validates(const json& v, const json& s) {
  if (s.contains("enum")) return std::find(s["enum"].begin(), s["enum"].end(), v) != s["enum"].end();
  const std::string type = s.value("type", s.contains("properties") ? "object" : "");
  if (type == "string") return v.is_string();
  if (type == "integer") return v.is_number_integer();
  if (type == "number") return v.is_number();
  if (type == "boolean") return v.is_boolean();
  if (type == "array") {
    if (!v.is_array() || int64_t(v.size()) < s.value("minItems", int64_t(0)) ||
        int64_t(v.size()) > s.value("maxItems", std::numeric_limits<int64_t>::max()))
      return false;
    return std::all_of(v.begin(), v.end(), [&](const json& item) { return validates(item, s["items"]); });
  }
  if (type == "object") {
    if (!v.is_object()) return false;
    for (const auto& name : s.value("required", json::array()))
      if (!v.contains(name.get<std::string>())) return false;
    for (const auto& [key, value] : v.items())
      if (!s["properties"].contains(key) || !validates(value, s["properties"][key])) return false;
    return true;
  }
  return true;
}

TEST(OutputGrammar, EveryRandomCompleteReplyParsesAndValidates) {
  std::mt19937 rng(5);
  const auto g = OutputGrammar::json_schema(kPerson);
  const auto object = OutputGrammar::any_json_object();
  for (int i = 0; i < 200; ++i) {
    const std::string reply = random_reply(*g, rng);
    json parsed;
    ASSERT_NO_THROW(parsed = json::parse(reply)) << reply;
    EXPECT_TRUE(validates(parsed, kPerson)) << reply;
    const std::string any = random_reply(*object, rng);
    ASSERT_NO_THROW(parsed = json::parse(any)) << any;
    EXPECT_TRUE(parsed.is_object()) << any;
  }
}

// Random logits through the token constraint on a real vocabulary: every reply ends (EOS) as a
// valid one. Prints the cost of one mask on the vocabulary.
void random_token_replies(const std::string& tokenizer_path, int replies) {
  const auto tokenizer = Tokenizer::load(tokenizer_path);
  const int64_t vocab = tokenizer->vocab_size();
  const int32_t eos = int32_t(vocab);  // a stand-in end-of-sequence id just past the vocabulary
  auto vocabulary = std::make_shared<const ConstraintVocabulary>(*tokenizer, std::vector<int32_t>{eos}, vocab);
  const auto g = OutputGrammar::json_schema(kPerson);
  std::mt19937 rng(9);
  std::vector<float> logits(size_t(vocab + 1));
  // Tokens that close a string, array or object: favoured after a while, so random replies end.
  std::vector<int32_t> closers;
  for (int32_t id = 0; id < int32_t(vocab); ++id)
    if (tokenizer->token_bytes(id).find_first_of("\"]}") != std::string::npos) closers.push_back(id);
  double mask_seconds = 0;
  int64_t masks = 0;
  for (int r = 0; r < replies; ++r) {
    TokenConstraint constraint(g, vocabulary, true);
    std::string text;
    for (int step = 0; step < 400; ++step) {
      for (float& x : logits) x = float(rng() % 1000) / 100.0f;
      logits[size_t(eos)] = 30.0f;  // end as soon as the grammar allows
      if (step > 30)
        for (int32_t id : closers) logits[size_t(id)] += 15.0f;
      const auto start = std::chrono::steady_clock::now();
      ASSERT_TRUE(constraint.mask(logits)) << text;
      mask_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ++masks;
      const auto best = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
      if (best == eos) break;
      text += tokenizer->token_bytes(best);
      constraint.accept(best);
    }
    json parsed;
    ASSERT_NO_THROW(parsed = json::parse(text)) << text;
    EXPECT_TRUE(validates(parsed, kPerson)) << text;
  }
  // The costliest state: inside a free string, where nearly every token fits.
  TokenConstraint inside(g, vocabulary, true);
  for (int32_t id : tokenizer->encode(R"({"age":1,"name":")")) inside.accept(id);
  std::fill(logits.begin(), logits.end(), 0.0f);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(inside.mask(logits));
  const double string_ms = 1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto allowed = std::count_if(logits.begin(), logits.end(), [](float x) { return std::isfinite(x); });
  std::printf("%s: %lld tokens, %.2f ms per masked step over %lld steps; inside a string %.2f ms (%lld tokens fit)\n",
              tokenizer_path.c_str(), (long long)vocab, 1e3 * mask_seconds / double(masks), (long long)masks,
              string_ms, (long long)allowed);
}

TEST(TokenConstraint, RandomLogitsGiveValidRepliesOnTheFixtureVocabulary) {
  const std::string dir = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(dir, "fixture tiny-r1-qwen");
  random_token_replies(dir + "/tokenizer.json", 30);
}

TEST(TokenConstraint, RandomLogitsGiveValidRepliesOnTheQwen2Vocabulary) {
  RETORT_REQUIRE_PATH(test::cached_tokenizer("qwen"), "qwen tokenizer");
  random_token_replies(test::cached_tokenizer("qwen"), 3);
}

TEST(TokenConstraint, WaitsForTheEndOfReasoning) {
  const std::string dir = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(dir, "fixture tiny-r1-qwen");
  const auto tokenizer = Tokenizer::load(dir + "/tokenizer.json");
  auto vocabulary = std::make_shared<const ConstraintVocabulary>(*tokenizer, std::vector<int32_t>{0},
                                                                 tokenizer->vocab_size());
  TokenConstraint constraint(OutputGrammar::choice({"yes", "no"}), vocabulary, false);
  std::vector<float> logits(size_t(tokenizer->vocab_size()), 1.0f);
  ASSERT_TRUE(constraint.mask(logits));
  EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float x) { return x == 1.0f; })) << "reasoning is free";
  for (int32_t id : tokenizer->encode("some thought </think>")) constraint.accept(id);
  ASSERT_TRUE(constraint.mask(logits));
  EXPECT_LT(std::count(logits.begin(), logits.end(), 1.0f), int64_t(logits.size())) << "now constrained";
}

}  // namespace
}  // namespace retort
