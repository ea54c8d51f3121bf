#include "model/tensor_table.h"

#include <fmt/format.h>

namespace retort {

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config) {
  const int64_t hidden = config.hidden_size;
  const int64_t ffn = config.intermediate_size;
  const int64_t q_dim = config.q_dim();
  const int64_t kv_dim = config.kv_dim();
  std::vector<ExpectedTensor> tensors;
  tensors.push_back({"model.embed_tokens.weight", "token_embd.weight", TensorRole::TokenEmbedding, -1,
                     {config.vocab_size, hidden}});
  for (int layer = 0; layer < config.num_layers; ++layer) {
    auto name = [layer](const char* suffix) { return fmt::format("model.layers.{}.{}", layer, suffix); };
    auto gguf = [layer](const char* suffix) { return fmt::format("blk.{}.{}", layer, suffix); };
    tensors.push_back({name("input_layernorm.weight"), gguf("attn_norm.weight"), TensorRole::AttnNorm, layer, {hidden}});
    tensors.push_back({name("self_attn.q_proj.weight"), gguf("attn_q.weight"), TensorRole::Wq, layer, {q_dim, hidden}});
    tensors.push_back({name("self_attn.k_proj.weight"), gguf("attn_k.weight"), TensorRole::Wk, layer, {kv_dim, hidden}});
    tensors.push_back({name("self_attn.v_proj.weight"), gguf("attn_v.weight"), TensorRole::Wv, layer, {kv_dim, hidden}});
    if (config.attention_bias) {
      tensors.push_back({name("self_attn.q_proj.bias"), gguf("attn_q.bias"), TensorRole::Bq, layer, {q_dim}});
      tensors.push_back({name("self_attn.k_proj.bias"), gguf("attn_k.bias"), TensorRole::Bk, layer, {kv_dim}});
      tensors.push_back({name("self_attn.v_proj.bias"), gguf("attn_v.bias"), TensorRole::Bv, layer, {kv_dim}});
    }
    tensors.push_back({name("self_attn.o_proj.weight"), gguf("attn_output.weight"), TensorRole::Wo, layer, {hidden, q_dim}});
    tensors.push_back({name("post_attention_layernorm.weight"), gguf("ffn_norm.weight"), TensorRole::MlpNorm, layer, {hidden}});
    tensors.push_back({name("mlp.gate_proj.weight"), gguf("ffn_gate.weight"), TensorRole::WGate, layer, {ffn, hidden}});
    tensors.push_back({name("mlp.up_proj.weight"), gguf("ffn_up.weight"), TensorRole::WUp, layer, {ffn, hidden}});
    tensors.push_back({name("mlp.down_proj.weight"), gguf("ffn_down.weight"), TensorRole::WDown, layer, {hidden, ffn}});
  }
  tensors.push_back({"model.norm.weight", "output_norm.weight", TensorRole::OutputNorm, -1, {hidden}});
  if (!config.tie_word_embeddings) {
    tensors.push_back({"lm_head.weight", "output.weight", TensorRole::LmHead, -1, {config.vocab_size, hidden}});
  }
  return tensors;
}

}  // namespace retort
