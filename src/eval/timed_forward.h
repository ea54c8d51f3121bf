#pragma once
// The timed pieces every speed figure is built from: a prefill, greedy decode steps after some
// context, one step of many sequences decoded together, and the memory-bandwidth probe that turns
// a decode rate into a share of the roofline. `retort bench`, `retort eval precision` and the
// programs in bench/ all measure through these, so their numbers mean the same thing.
#include <cstdint>
#include <span>
#include <vector>

#include "model/transformer.h"

namespace retort {

// A fixed prompt of `tokens` ids spread over the vocabulary (ids 10 and up: clear of the special
// tokens small vocabularies start with), the same on every run.
std::vector<int32_t> synthetic_prompt(int64_t tokens, int64_t vocab_size);

// Gives `sequence` (empty, blocks not yet reserved) `positions` positions of random keys and values
// in every layer. The time of attention does not depend on the values, and this costs nothing
// next to a prefill of that length.
void fill_synthetic_context(Transformer& model, KvCache& cache, KvSequence& sequence, int64_t positions);

// One untimed forward of a few tokens: page faults and thread start-up stay out of the timings.
void warm_up(Transformer& model, KvCache& cache, std::span<const int32_t> prompt);

// Reserves room for the prompt in `sequence` (empty), evaluates it in one forward and returns the
// seconds it took; `logits` then holds the last position's row. The caller releases the sequence.
double time_prefill(Transformer& model, KvCache& cache, KvSequence& sequence, std::span<const int32_t> prompt,
                    std::vector<float>& logits);

// `steps` single-token forwards after the sequence's context: `first_token`, then each step's
// argmax. Room is reserved before the clock starts; returns the seconds of the steps.
double time_greedy_decode(Transformer& model, KvCache& cache, KvSequence& sequence, int32_t first_token,
                          int64_t steps, std::vector<float>& logits);

// Seconds per forward of `batch` sequences each decoding one token after `context` positions
// (synthetic), `steps` forwards timed after one untimed. The sequences are released afterwards.
double time_batched_decode_step(Transformer& model, KvCache& cache, int64_t batch, int64_t context, int64_t steps);

// Positions a KvCache needs for time_batched_decode_step: every sequence rounded up to whole blocks.
int64_t batched_decode_positions(int64_t batch, int64_t context, int64_t steps, int64_t block_size);

// Bytes of weights one decode step reads: every matrix but the embedding table, of which it reads
// one row (unless the LM head is the same tensor).
double weight_bytes_per_token(const ModelWeights& weights);

// Bytes of keys and values a decode step reads on average over `steps` steps after `depth`
// positions: the context at the middle of the stretch, in every layer.
double kv_bytes_per_token(const ModelConfig& config, DType kv_type, int64_t depth, int64_t steps);

// Streams a buffer of `buffer_mib` MiB (larger than every cache) through the kernels' own dot
// product on `threads` threads, best of 5 passes, in GB/s. The buffer is backed by huge pages, as
// the loaded weights are, so both see the same TLB behaviour.
double measure_bandwidth_gbs(int threads, int64_t buffer_mib = 1024);

}  // namespace retort
