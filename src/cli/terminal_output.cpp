#include "cli/terminal_output.h"

#include <cstdio>

#include "util/log.h"

namespace retort::cli {

namespace {
constexpr const char* kDim = "\x1b[2m";
constexpr const char* kReset = "\x1b[0m";
}  // namespace

StreamPrinter::StreamPrinter(ReasoningDisplay display, bool starts_in_reasoning)
    : display_(display), colour_(stdout_is_terminal()), splitter_(starts_in_reasoning) {
  if (display_ == ReasoningDisplay::Plain && starts_in_reasoning) std::fputs("<think>\n", stdout);
}

void StreamPrinter::write(const ChannelText& text) {
  const bool reasoning = text.channel == TextChannel::Reasoning;
  if (display_ == ReasoningDisplay::Hide && reasoning) return;
  if (display_ == ReasoningDisplay::Dim && colour_ && reasoning != dimmed_) {
    std::fputs(reasoning ? kDim : kReset, stdout);
    dimmed_ = reasoning;
  }
  std::fwrite(text.text.data(), 1, text.text.size(), stdout);
}

void StreamPrinter::print(std::string_view piece) {
  if (display_ == ReasoningDisplay::Plain) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
  } else {
    for (const auto& text : splitter_.push(piece)) write(text);
  }
  std::fflush(stdout);
}

void StreamPrinter::finish() {
  if (display_ != ReasoningDisplay::Plain) {
    for (const auto& text : splitter_.flush()) write(text);
  }
  if (dimmed_) std::fputs(kReset, stdout);
  dimmed_ = false;
  std::fflush(stdout);
}

}  // namespace retort::cli
