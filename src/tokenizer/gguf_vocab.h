#pragma once
// The tokenizer a GGUF file embeds (tokenizer.ggml.*), rebuilt as the Hugging Face tokenizer it
// came from: the BPE vocabulary and merges, the pre-tokenizer its `pre` name stands for, added
// tokens from the token types, BOS/EOS and the chat template.
#include <memory>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace retort {

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GgufFile& gguf);

}  // namespace retort
