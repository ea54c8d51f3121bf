#pragma once
// Sizes of memory as people write them on a command line or in YAML ("6GiB", "512 MiB", "1048576")
// and as messages print them back.
#include <cstdint>
#include <string>
#include <string_view>

namespace retort {

// A whole number or decimal followed by an optional unit: B, KiB, MiB, GiB, TiB (powers of 1024;
// case-insensitive, a space before the unit allowed). A plain number is bytes. Throws retort::Error
// (InvalidInput) naming `what` (e.g. "--max-memory") and the accepted forms for anything else,
// including zero, negative numbers and sizes past 2^63 bytes.
uint64_t parse_byte_size(std::string_view text, std::string_view what);

// "6.00 GiB", "512.0 MiB", "12.0 KiB", "100 B": the largest unit the size reaches.
std::string format_byte_size(uint64_t bytes);

}  // namespace retort
