#include <gtest/gtest.h>

#include "engine/reasoning.h"

namespace retort {
namespace {

// Feeds the pieces and returns "R[...]C[...]" showing what went to which channel.
std::string split(bool starts_in_reasoning, const std::vector<std::string>& pieces) {
  ReasoningSplitter splitter(starts_in_reasoning);
  std::string reasoning, content;
  auto take = [&](const std::vector<ChannelText>& parts) {
    for (const auto& part : parts) (part.channel == TextChannel::Reasoning ? reasoning : content) += part.text;
  };
  for (const auto& piece : pieces) take(splitter.push(piece));
  take(splitter.flush());
  return "R[" + reasoning + "]C[" + content + "]";
}

TEST(ReasoningSplitter, ForcedThinkPromptHasNoOpeningTag) {
  EXPECT_EQ(split(true, {"Let me think.", "</think>", "\n\nThe answer is 4."}), "R[Let me think.]C[The answer is 4.]");
}

TEST(ReasoningSplitter, TagsSplitAcrossPieces) {
  EXPECT_EQ(split(false, {"<th", "ink>", "hmm", "</", "thi", "nk>\n", "\n", "ok"}), "R[hmm]C[ok]");
  EXPECT_EQ(split(true, {"a<", "/think", ">b"}), "R[a]C[b]");
}

TEST(ReasoningSplitter, NoReasoningAtAll) {
  EXPECT_EQ(split(false, {"Plain ", "answer < 5"}), "R[]C[Plain answer < 5]");
}

TEST(ReasoningSplitter, LaterOpeningTagIsContent) {
  EXPECT_EQ(split(false, {"Use the <think> tag"}), "R[]C[Use the <think> tag]");
}

TEST(ReasoningSplitter, UnfinishedReasoningIsFlushedAsReasoning) {
  EXPECT_EQ(split(true, {"still thinking </thi"}), "R[still thinking </thi]C[]");
}

TEST(ReasoningSplitter, DetectsPromptsThatOpenReasoning) {
  EXPECT_TRUE(prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜><think>\n"));
  EXPECT_FALSE(prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜>"));
}

}  // namespace
}  // namespace retort
