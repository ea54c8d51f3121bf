// Chat templates: expected strings worked out by hand from the official Jinja sources in
// ../shared/data/chat-templates/, and detection of each template from its source.
#include <gtest/gtest.h>

#include "test_support.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

using Messages = std::vector<ChatMessage>;

const Messages kConversation = {
    {"system", "You are helpful."},
    {"user", "Hi"},
    {"assistant", "<think>\nThe user greets.\n</think>\n\nHello!"},
    {"user", "Again?"},
};

TEST(ChatTemplateDeepSeekR1, DropsEarlierReasoningAndOpensThinking) {
  EXPECT_EQ(render_chat(ChatTemplateKind::DeepSeekR1, kConversation, true),
            "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜>\n\nHello!<｜end▁of▁sentence｜>"
            "<｜User｜>Again?<｜Assistant｜><think>\n");
  EXPECT_EQ(render_chat(ChatTemplateKind::DeepSeekR1, kConversation, false),
            "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜>\n\nHello!<｜end▁of▁sentence｜>"
            "<｜User｜>Again?");
}

TEST(ChatTemplateDeepSeekR1, LegacyGenerationPromptIsOnlyTheAssistantTag) {
  EXPECT_EQ(render_chat(ChatTemplateKind::DeepSeekR1Legacy, kConversation, true),
            "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜>\n\nHello!<｜end▁of▁sentence｜>"
            "<｜User｜>Again?<｜Assistant｜>");
  EXPECT_EQ(render_chat(ChatTemplateKind::DeepSeekR1Legacy, {{"user", "Hi"}}, true),
            "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>");
}

TEST(ChatTemplateDeepSeekR1, SystemPromptPlacementAndEdgeCases) {
  // The last system message wins and always goes right after BOS, wherever it was sent.
  EXPECT_EQ(render_chat(ChatTemplateKind::DeepSeekR1, {{"system", "A"}, {"user", "u"}, {"system", "B"}}, false),
            "<｜begin▁of▁sentence｜>B<｜User｜>u");
  // Everything up to the last </think> goes; content without one is kept whole.
  EXPECT_EQ(render_chat(ChatTemplateKind::DeepSeekR1, {{"assistant", "a</think>b</think>c"}, {"assistant", " x "}}, false),
            "<｜begin▁of▁sentence｜><｜Assistant｜>c<｜end▁of▁sentence｜><｜Assistant｜> x <｜end▁of▁sentence｜>");
  EXPECT_EQ(render_chat(ChatTemplateKind::DeepSeekR1, {}, true), "<｜begin▁of▁sentence｜><｜Assistant｜><think>\n");
  ChatOptions no_thinking;
  no_thinking.enable_thinking = false;
  EXPECT_EQ(render_chat(ChatTemplateKind::DeepSeekR1, {{"user", "Hi"}}, true, no_thinking),
            "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n</think>");
}

TEST(ChatTemplateChatML, DefaultSystemPromptWhenNoneIsGiven) {
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, {{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"},
                                                   {"user", " Bye \n"}},
                        false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\n Bye \n<|im_end|>\n");
  // A system message after the first turn is rendered where it is; reasoning is not stripped.
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, {{"user", "Hi"}, {"system", "Note"}, {"assistant", "<think>x</think>y"}},
                        false),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>system\nNote<|im_end|>\n"
            "<|im_start|>assistant\n<think>x</think>y<|im_end|>\n");
}

TEST(ChatTemplateLlama3, SystemHeaderWithKnowledgeDateAndTrimmedContent) {
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama3, {{"system", "  Be brief. "}, {"user", " Hi\n"}}, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  ChatOptions dated;
  dated.date_string = "01 Jan 2025";
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama3, {{"user", "Hi"}, {"assistant", "Yo"}}, false, dated),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>");
}

TEST(ChatTemplateLlama3, Llama30HasNoSystemHeader) {
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama30, {{"system", "S "}, {"user", "Hi"}}, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateDetection, OfficialTemplates) {
  const std::vector<std::pair<std::string, ChatTemplateKind>> expected = {
      {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", ChatTemplateKind::DeepSeekR1},
      {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", ChatTemplateKind::DeepSeekR1},
      {"Qwen-Qwen2.5-7B-Instruct.jinja", ChatTemplateKind::ChatML},
      {"meta-llama-Llama-3.1-8B-Instruct.jinja", ChatTemplateKind::Llama3},
  };
  for (const auto& [file, kind] : expected) {
    const std::string path = test::shared_path("data/chat-templates/" + file);
    RETORT_REQUIRE_PATH(path, file);
    const std::string source = read_text_file(path);
    EXPECT_EQ(detect_chat_template(source), kind) << file;
    if (kind == ChatTemplateKind::DeepSeekR1) {
      // The earlier R1-Distill template differs only in its generation prompt.
      std::string legacy = source;
      const std::string opening = "'<｜Assistant｜><think>\\n'";
      ASSERT_NE(legacy.find(opening), std::string::npos);
      legacy.replace(legacy.find(opening), opening.size(), "'<｜Assistant｜>'");
      EXPECT_EQ(detect_chat_template(legacy), ChatTemplateKind::DeepSeekR1Legacy) << file;
    }
  }
}

TEST(ChatTemplateDetection, CachedTokenizerConfigs) {
  const std::string llama = test::cached_tokenizer("llama3");
  RETORT_REQUIRE_PATH(llama, "llama3 tokenizer");
  EXPECT_EQ(detect_chat_template(Tokenizer::load(llama)->chat_template_source()), ChatTemplateKind::Llama30);
}

TEST(ChatTemplateDetection, UnrecognisedTemplatesAreErrors) {
  for (const std::string& source :
       {std::string(), std::string("{{ messages }}"), std::string("<|im_start|>{{ m }}<|im_end|>"),
        std::string("{{'<｜User｜>' + c}}{{'<｜Assistant｜>'}}")}) {
    try {
      detect_chat_template(source);
      FAIL() << "expected an error for: " << source;
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::Unsupported);
      EXPECT_NE(std::string(error.what()).find("deepseek-r1, deepseek-r1-legacy, chatml, llama3"), std::string::npos);
    }
  }
}

TEST(ChatTemplateNames, RoundTrip) {
  for (auto kind : {ChatTemplateKind::DeepSeekR1, ChatTemplateKind::DeepSeekR1Legacy, ChatTemplateKind::ChatML,
                    ChatTemplateKind::Llama3, ChatTemplateKind::Llama30}) {
    EXPECT_EQ(chat_template_from_name(chat_template_name(kind)), kind);
  }
  EXPECT_EQ(chat_template_from_name("deepseek-r1"), ChatTemplateKind::DeepSeekR1);
  EXPECT_EQ(chat_template_from_name("deepseek-r1-legacy"), ChatTemplateKind::DeepSeekR1Legacy);
  EXPECT_EQ(chat_template_from_name("chatml"), ChatTemplateKind::ChatML);
  EXPECT_EQ(chat_template_from_name("llama3"), ChatTemplateKind::Llama3);
  EXPECT_FALSE(chat_template_from_name("jinja").has_value());
}

TEST(ChatTemplateErrors, ToolsUnknownRolesAndEmptyConversations) {
  EXPECT_THROW(
      {
        try {
          render_chat(ChatTemplateKind::DeepSeekR1, {{"tool", "{}"}}, true);
        } catch (const Error& error) {
          EXPECT_EQ(error.kind(), ErrorKind::Unsupported);
          throw;
        }
      },
      Error);
  EXPECT_THROW(render_chat(ChatTemplateKind::ChatML, {{"robot", "beep"}}, true), Error);
  EXPECT_THROW(render_chat(ChatTemplateKind::ChatML, {}, true), Error);
  EXPECT_THROW(render_chat(ChatTemplateKind::Llama3, {}, true), Error);
}

}  // namespace
}  // namespace retort
