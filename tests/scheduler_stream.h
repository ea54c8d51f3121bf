#pragma once
// Reading a scheduler request's stream to its end, for the scheduler tests.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "engine/scheduler.h"

namespace retort::test {

struct Collected {
  std::string content;
  std::string reasoning;
  FinishReason reason = FinishReason::Stop;
  int64_t generated = 0;
  int events = 0;
};

inline Collected collect(RequestStream& stream) {
  Collected out;
  for (int spins = 0; spins < 6000; ++spins) {  // at most a minute
    for (auto& event : stream.wait_events(std::chrono::milliseconds(10))) {
      ++out.events;
      out.content += event.content;
      out.reasoning += event.reasoning;
      if (event.finished) {
        out.reason = event.reason;
        out.generated = event.generated_tokens;
        return out;
      }
    }
  }
  ADD_FAILURE() << "the request never finished";
  return out;
}

}  // namespace retort::test
