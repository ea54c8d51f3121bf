#pragma once
// This process's memory as Linux accounts it (/proc/self), for the benchmarks' RSS figures.
#include <cstdint>

namespace retort {

// Resident set size now (VmRSS); 0 where /proc is not readable.
uint64_t resident_bytes();
// Of that, anonymous memory in transparent huge pages (AnonHugePages of smaps_rollup, Linux ≥ 4.14):
// how much of a loaded model's weights got the 2 MiB pages its decode speed depends on.
uint64_t huge_page_bytes();
// The highest resident set size since the process started or since the last reset (VmHWM).
uint64_t peak_resident_bytes();
// Starts a new peak at the current resident size (writes "5" to /proc/self/clear_refs, Linux ≥ 4.0),
// so a phase's peak does not include an earlier phase's buffers. False where the kernel refuses;
// the peak then still counts everything since the start.
bool reset_peak_resident();

}  // namespace retort
