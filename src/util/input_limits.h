#pragma once
// Bounds on what an untrusted file or request can make a reader do. Nesting is bounded because
// code that walks a parsed tree (dump() for a message, a shape reader, the YAML walkers) recurses
// once per level: 100,000 levels of `[[[…]]]` in a safetensors header overflowed the stack. Values
// echoed in error messages are bounded so a crafted input cannot make the message megabytes long.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace retort {

inline constexpr int kMaxInputNesting = 128;       // arrays/objects (or YAML collections) inside each other
inline constexpr size_t kMaxEchoedChars = 200;     // bytes of an input value quoted in a message

// `text` as it may appear in an error message: whole when short, else its first kMaxEchoedChars
// bytes (not cutting a UTF-8 sequence) and "... (N bytes)".
std::string echo_excerpt(std::string_view text, size_t max_bytes = kMaxEchoedChars);

// json::parse with nesting bounded by kMaxInputNesting: deeper input throws retort::Error
// (InvalidInput) naming `what` (e.g. "'model.safetensors': the safetensors header"). Malformed
// JSON still throws nlohmann's exceptions, for the caller to explain; pass their what() through
// echo_excerpt (nlohmann quotes the token it stopped at, which can be a whole long string).
nlohmann::json parse_json_bounded(std::string_view text, const std::string& what);

// object[key] as an integer of type Integer. nlohmann's get<int64_t>() casts a JSON float to the
// integer type, which is undefined beyond its range ("step": 8e+26 in a trainer state, found by
// fuzz_trainer_state) and truncates within it (5.5 read as 5), so a value that is not a JSON
// integer throws json::type_error, as get() does for a string; a missing key json::out_of_range,
// as at() does. Callers explain both as they explain any malformed file.
void refuse_non_integer(const nlohmann::json& value, const char* key);
template <class Integer>
Integer json_integer(const nlohmann::json& object, const char* key) {
  const nlohmann::json& value = object.at(key);
  if (!value.is_number_integer()) refuse_non_integer(value, key);
  return value.get<Integer>();
}
// The same for an optional key: `fallback` when the object has none.
template <class Integer>
Integer json_integer_or(const nlohmann::json& object, const char* key, Integer fallback) {
  return object.contains(key) ? json_integer<Integer>(object, key) : fallback;
}

}  // namespace retort
