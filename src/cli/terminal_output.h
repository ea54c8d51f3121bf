#pragma once
// Writes generated text to the terminal as it streams, with the R1 reasoning dimmed (or hidden)
// and colour only when stdout is a TTY.
#include <string_view>

#include "engine/reasoning.h"

namespace retort::cli {

enum class ReasoningDisplay { Dim, Hide, Plain };

class StreamPrinter {
 public:
  StreamPrinter(ReasoningDisplay display, bool starts_in_reasoning);
  void print(std::string_view piece);
  void finish();

 private:
  void write(const ChannelText& text);

  ReasoningDisplay display_;
  bool colour_;
  ReasoningSplitter splitter_;
  bool dimmed_ = false;
};

}  // namespace retort::cli
