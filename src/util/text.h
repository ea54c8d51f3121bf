#pragma once
// Small text helpers for the plain-ASCII files the system exposes (/proc, /sys, configs).
#include <string_view>

namespace retort {

// `text` without leading and trailing spaces, tabs, CRs and LFs.
inline std::string_view trim_ascii_whitespace(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n";
  const size_t first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(kSpace) - first + 1);
}

}  // namespace retort
