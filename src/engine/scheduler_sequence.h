#pragma once
// The scheduler's per-request state, shared by scheduler.cpp and scheduler_speculation.cpp.
#include "engine/reasoning.h"
#include "engine/scheduler.h"
#include "engine/token_constraint.h"

namespace retort {

struct Scheduler::Sequence {
  // vocab / draft_vocab: the lengths of the target's and the draft's logits rows.
  Sequence(GenerationRequest r, const Tokenizer& tokenizer, const std::vector<int32_t>& eos_ids, int64_t vocab,
           int64_t draft_vocab)
      : request(std::move(r)),
        stream(std::make_shared<RequestStream>()),
        tokens(request.prompt),
        prompt_size(static_cast<int64_t>(request.prompt.size())),
        sampler(request.sampling, vocab),
        stop(eos_ids, request.stop_strings, request.max_tokens),
        decoder(tokenizer),
        splitter(request.starts_in_reasoning),
        draft_sampler(make_draft_sampler(request.sampling, draft_vocab)) {}

  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - kv.length; }
  int64_t generated() const { return static_cast<int64_t>(tokens.size()) - prompt_size; }

  GenerationRequest request;
  std::shared_ptr<RequestStream> stream;
  std::vector<int32_t> tokens;  // the prompt, then every sampled token (the last one not yet evaluated)
  int64_t prompt_size;
  KvSequence kv;
  Sampler sampler;
  StopChecker stop;
  StreamingDecoder decoder;
  ReasoningSplitter splitter;
  std::optional<TokenConstraint> constraint;  // with request.grammar, from the first sampled token
  std::vector<float> masked_logits;
  uint64_t admit_order = 0;
  bool done = false;
  // Speculative decoding: the draft's copy of this sequence, and this step's proposal to verify.
  CachedSequence draft;
  Sampler draft_sampler;
  DraftProposal proposal;
  std::vector<int32_t> verify_tokens;  // the pending token, then the proposal
};

}  // namespace retort
