#pragma once
// Range checks for numeric flags whose message states the accepted range in plain numbers
// (CLI11's PositiveNumber/NonNegativeNumber print the range up to DBL_MAX, a 309-digit bound).
#include <CLI/CLI.hpp>

#include <string>

namespace retort::cli {

// Accepts whole numbers from `low` to `high` inclusive; `meaning` says what the bounds mean
// (e.g. "0 = all hardware threads"), shown after the range.
CLI::Validator integer_in(long long low, long long high, const std::string& meaning = "");
// Accepts whole numbers of at least `low`.
CLI::Validator integer_at_least(long long low, const std::string& meaning = "");
// Accepts finite numbers from `low` to `high` inclusive.
CLI::Validator number_in(double low, double high, const std::string& meaning = "");

}  // namespace retort::cli
