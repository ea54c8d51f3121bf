#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/stop_conditions.h"
#include "util/error.h"

namespace retort {
namespace {

constexpr int32_t kEos = 151643;
constexpr int32_t kText = 100;  // any token that is not an EOS

// Everything the checker lets through, as a client would see it.
struct Transcript {
  std::string emitted;
  StopResult last;
};

Transcript feed(StopChecker& checker, const std::vector<std::string>& pieces) {
  Transcript transcript;
  for (const std::string& piece : pieces) {
    transcript.last = checker.push(kText, piece);
    transcript.emitted += transcript.last.text;
    if (transcript.last.stop) break;
  }
  return transcript;
}

TEST(StopChecker, StopStringSplitAcrossPiecesIsHeldThenDropped) {
  StopChecker checker({kEos}, {"</answer>"}, 100);
  StopResult first = checker.push(kText, "The answer is 4");
  EXPECT_EQ(first.text, "The answer is 4");
  StopResult second = checker.push(kText, "</ans");
  EXPECT_FALSE(second.stop);
  EXPECT_EQ(second.text, "");  // might be the stop string: held
  StopResult third = checker.push(kText, "wer> and more");
  EXPECT_TRUE(third.stop);
  EXPECT_EQ(third.reason, StopReason::StopString);
  EXPECT_EQ(third.matched_stop_string, "</answer>");
  EXPECT_EQ(third.text, "");  // neither the stop string nor what follows it
  EXPECT_STREQ(openai_finish_reason(third.reason), "stop");
}

TEST(StopChecker, PartialMatchThatIsNotAStopIsReleased) {
  StopChecker checker({kEos}, {"</answer>"}, 100);
  StopResult first = checker.push(kText, "x </a");
  EXPECT_EQ(first.text, "x ");
  StopResult second = checker.push(kText, "b>");
  EXPECT_FALSE(second.stop);
  EXPECT_EQ(second.text, "</ab>");
}

TEST(StopChecker, TextBeforeAStopInsideOnePieceIsEmitted) {
  StopChecker checker({}, {"STOP"}, 100);
  Transcript transcript = feed(checker, {"one two STOP three"});
  EXPECT_TRUE(transcript.last.stop);
  EXPECT_EQ(transcript.emitted, "one two ");
}

TEST(StopChecker, EarliestStopStringWins) {
  StopChecker checker({}, {"world", "lo w", "hello world"}, 100);
  Transcript transcript = feed(checker, {"say hel", "lo world"});
  EXPECT_EQ(transcript.last.matched_stop_string, "hello world");
  EXPECT_EQ(transcript.emitted, "say ");
}

TEST(StopChecker, OverlappingPrefixesAreReleasedOneByOne) {
  StopChecker checker({}, {"aab"}, 100);
  Transcript transcript = feed(checker, {"a", "a", "a", "b"});
  EXPECT_EQ(transcript.last.reason, StopReason::StopString);
  EXPECT_EQ(transcript.emitted, "a");
}

TEST(StopChecker, EosStopsWithoutItsTextAndReleasesHeldText) {
  StopChecker checker({7, kEos}, {"<tag>"}, 100);
  EXPECT_EQ(checker.push(kText, "done <").text, "done ");
  StopResult result = checker.push(kEos, "<｜end▁of▁sentence｜>");
  EXPECT_TRUE(result.stop);
  EXPECT_EQ(result.reason, StopReason::Eos);
  EXPECT_EQ(result.text, "<");
  EXPECT_TRUE(checker.push(7, "").stop);  // any of the EOS ids; further pushes stay stopped
  EXPECT_EQ(checker.push(kText, "more").text, "");
}

TEST(StopChecker, MaxTokensStopsAndReleasesHeldText) {
  StopChecker checker({kEos}, {"</think>"}, 3);
  EXPECT_FALSE(checker.push(kText, "a").stop);
  EXPECT_FALSE(checker.push(kText, "b").stop);
  StopResult third = checker.push(kText, "c</th");
  EXPECT_TRUE(third.stop);
  EXPECT_EQ(third.reason, StopReason::MaxTokens);
  EXPECT_EQ(third.text, "c</th");
  EXPECT_EQ(checker.tokens_seen(), 3);
  EXPECT_STREQ(openai_finish_reason(third.reason), "length");
}

TEST(StopChecker, StopStringOnTheLastTokenReportsStopNotLength) {
  StopChecker checker({}, {"\n\n"}, 2);
  StopResult first = checker.push(kText, "hi\n");
  EXPECT_FALSE(first.stop);
  EXPECT_EQ(first.text, "hi");
  StopResult second = checker.push(kText, "\n");
  EXPECT_EQ(second.reason, StopReason::StopString);
  EXPECT_EQ(second.text, "");
}

TEST(StopChecker, FlushReleasesHeldText) {
  StopChecker checker({}, {"###"}, 100);
  EXPECT_EQ(checker.push(kText, "title #").text, "title ");
  EXPECT_EQ(checker.push(kText, "#").text, "");
  EXPECT_EQ(checker.flush(), "##");
  EXPECT_EQ(checker.flush(), "");
}

TEST(StopChecker, MultiByteTextIsNeverSplitInsideACharacter) {
  StopChecker checker({}, {"。\n"}, 100);
  Transcript transcript = feed(checker, {"答案是四", "。", "\n"});
  EXPECT_EQ(transcript.emitted, "答案是四");
  EXPECT_EQ(transcript.last.reason, StopReason::StopString);
}

TEST(StopChecker, WithoutStopStringsNothingIsHeld) {
  StopChecker checker({kEos}, {"", ""}, 10);
  EXPECT_EQ(checker.push(kText, "</answer>").text, "</answer>");
}

TEST(StopChecker, RejectsANonPositiveTokenBudget) { EXPECT_THROW(StopChecker({}, {}, 0), Error); }

}  // namespace
}  // namespace retort
