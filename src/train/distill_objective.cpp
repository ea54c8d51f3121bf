// DistillObjective: every distillation term on one micro-batch, and its gradient into the student
// through the training model's backward hooks (see distill.h).
#include <algorithm>
#include <cmath>
#include <random>

#include "tokenizer/tokenizer.h"
#include "train/distill.h"
#include "train/kd_losses.h"
#include "train/layers.h"
#include "util/error.h"

namespace retort::train {

void check_vocabularies(const ModelConfig& teacher, const ModelConfig& student) {
  require(teacher.vocab_size >= student.vocab_size, ErrorKind::InvalidInput,
          "the teacher's vocabulary ({} ids) is smaller than the student's ({}): the soft labels are compared over "
          "the student's ids, so the teacher must cover them (same tokenizer, padded at least as far)",
          teacher.vocab_size, student.vocab_size);
}

void check_same_tokenizer(const Tokenizer& teacher, const Tokenizer& student, const std::string& teacher_name,
                          const std::string& student_name) {
  const std::string why = "distillation compares the two models' distributions id by id, so they must share one "
                          "tokenizer; give the student the teacher's (model.tokenizer) or pick a matching teacher";
  require(teacher.vocab_size() == student.vocab_size(), ErrorKind::InvalidInput,
          "the teacher's tokenizer ({}: {} tokens) and the student's ({}: {} tokens) differ: {}", teacher_name,
          teacher.vocab_size(), student_name, student.vocab_size(), why);
  for (int32_t id = 0; id < teacher.vocab_size(); ++id) {
    const bool tt = teacher.is_token(id), st = student.is_token(id);
    if (tt != st || (tt && (teacher.token_bytes(id) != student.token_bytes(id) ||
                            teacher.is_special(id) != student.is_special(id))))
      fail(ErrorKind::InvalidInput,
           "the teacher's tokenizer ({}) and the student's ({}) differ: token id {} is '{}' in one and '{}' in the "
           "other; {}", teacher_name, student_name, id, tt ? teacher.token_bytes(id) : "(none)",
           st ? student.token_bytes(id) : "(none)", why);
  }
}

void check_layer_maps(const DistillConfig& c, const ModelConfig& s, const ModelConfig& t, bool student_checkpointing) {
  for (const LayerPair& p : c.hidden_map) {
    require(p.student >= 0 && p.student <= s.num_layers, ErrorKind::OutOfRange,
            "distill.hidden.layer_map: student hidden state {} does not exist; the student has {} layers, so hidden "
            "states 0 (embeddings) to {} (after the last layer)", p.student, s.num_layers, s.num_layers);
    require(p.teacher >= 0 && p.teacher <= t.num_layers, ErrorKind::OutOfRange,
            "distill.hidden.layer_map: teacher hidden state {} does not exist; the teacher has {} layers, so hidden "
            "states 0 (embeddings) to {} (after the last layer)", p.teacher, t.num_layers, t.num_layers);
  }
  for (const LayerPair& p : c.attention_map) {
    require(p.student >= 0 && p.student < s.num_layers, ErrorKind::OutOfRange,
            "distill.attention.layer_map: student layer {} does not exist; the student has layers 0..{}", p.student,
            s.num_layers - 1);
    require(p.teacher >= 0 && p.teacher < t.num_layers, ErrorKind::OutOfRange,
            "distill.attention.layer_map: teacher layer {} does not exist; the teacher has layers 0..{}", p.teacher,
            t.num_layers - 1);
  }
  require(c.attention_map.empty() || c.w_attention == 0 || !student_checkpointing, ErrorKind::Unsupported,
          "attention transfer needs every layer's attention probabilities: set memory.activation_checkpointing: false");
}

template <typename T>
DistillObjective<T>::DistillObjective(const DistillConfig& c, TrainModel<T>& student, TrainModel<T>& teacher)
    : c_(c), student_(student), teacher_(teacher) {
  const ModelConfig &s = student.config(), &t = teacher.config();
  require(student.batch() == teacher.batch() && student.seq_len() == teacher.seq_len(), ErrorKind::InvalidInput,
          "teacher and student must run the same batch shape");
  check_vocabularies(t, s);
  check_layer_maps(c, s, t, false);
  // One learned projection W [Ct, Cs], b [Ct] per hidden pair, in one flat allocation.
  const int64_t Cs = s.hidden_size, Ct = t.hidden_size;
  for (size_t k = 0; k < c.hidden_map.size(); ++k) {
    ParameterInfo w{fmt::format("distill.hidden_projection.{}.weight", k), TensorRole::Wo, -1, {Ct, Cs},
                    proj_layout_.total, size_t(Ct * Cs), true};
    proj_layout_.total += w.count;
    ParameterInfo b{fmt::format("distill.hidden_projection.{}.bias", k), TensorRole::Bq, -1, {Ct},
                    proj_layout_.total, size_t(Ct), false};
    proj_layout_.total += b.count;
    proj_layout_.tensors.push_back(w);
    proj_layout_.tensors.push_back(b);
  }
  proj_.assign(proj_layout_.total, T(0));
  dproj_.assign(proj_layout_.total, T(0));
  const int64_t N = student.batch() * student.seq_len();
  for (size_t k = 0; k < c.hidden_map.size(); ++k) dhidden_.emplace_back(size_t(N * Cs), T(0));
  for (size_t k = 0; k < c.attention_map.size(); ++k)
    dattention_.emplace_back(size_t(student.batch() * s.num_heads * student.seq_len() * student.seq_len()), T(0));
  const int64_t chunk = std::min(c.chunk_rows, N);
  teacher_chunk_.resize(size_t(chunk * t.vocab_size));
  teacher_rows_.resize(size_t(chunk * t.hidden_size));
  grad_chunk_.resize(size_t(chunk * s.vocab_size));
  if (c.top_k > 0) {
    topk_ids_.resize(size_t(chunk * c.top_k));
    topk_values_.resize(size_t(chunk * c.top_k));
  }
}

template <typename T>
void DistillObjective<T>::init_projections(uint64_t seed) {
  // W ~ N(0, 1/Cs) keeps the projected state's scale that of the student's; b = 0.
  std::mt19937_64 rng(seed ^ 0x6b64ull);
  std::normal_distribution<double> normal(0.0, 1.0 / std::sqrt(double(student_.config().hidden_size)));
  for (const ParameterInfo& p : proj_layout_.tensors)
    for (size_t i = 0; i < p.count; ++i) proj_[p.offset + i] = p.weight_decay ? T(normal(rng)) : T(0);
}

template <typename T>
void DistillObjective<T>::teacher_logits(const int64_t* rows, int64_t count) {
  const ModelConfig& t = teacher_.config();
  const int64_t C = t.hidden_size;
  gather_rows(teacher_rows_.data(), teacher_.final_hidden(), rows, count, C);
  linear_forward(teacher_chunk_.data(), teacher_rows_.data(), teacher_.weights().lm_head,
                 static_cast<const T*>(nullptr), count, C, t.vocab_size);
}

template <typename T>
double DistillObjective<T>::soft_and_hard(T* logits, bool write_gradient, double hard_w, double soft_w,
                                          double token_scale) {
  // The student's logits are its logit_rows() only (the positions with a target), and so are the
  // teacher's: no term reads the others.
  const std::vector<int64_t>& rows = student_.logit_rows();
  const int32_t* targets = student_.logit_targets().data();
  const auto M = static_cast<int64_t>(rows.size());
  const int64_t V = student_.config().vocab_size, Vt = teacher_.config().vocab_size;
  const int64_t chunk = std::max<int64_t>(1, std::min(c_.chunk_rows, M));
  double soft = 0;
  for (int64_t r0 = 0; r0 < M; r0 += chunk) {
    const int64_t r1 = std::min(M, r0 + chunk), count = r1 - r0;
    T* g = write_gradient ? grad_chunk_.data() : nullptr;
    if (g != nullptr) {
      std::fill_n(g, count * V, T(0));
      hard_ce_loss(g, logits + r0 * V, targets + r0, count, V, hard_w * token_scale);
    }
    if (soft_w > 0) {
      teacher_logits(rows.data() + r0, count);
      if (c_.top_k > 0) {
        top_k_rows(topk_ids_.data(), topk_values_.data(), teacher_chunk_.data(), Vt, count, V, c_.top_k);
        soft += soft_loss_top_k(g, logits + r0 * V, topk_ids_.data(), topk_values_.data(), count, V, c_.top_k,
                                c_.soft.temperature, targets + r0, soft_w * token_scale);
      } else {
        soft += soft_loss(g, logits + r0 * V, teacher_chunk_.data(), Vt, count, V, c_.soft, targets + r0,
                          soft_w * token_scale);
      }
    }
    if (g != nullptr) std::copy(g, g + count * V, logits + r0 * V);
  }
  return soft;
}

template <typename T>
LossTerms DistillObjective<T>::run(const int32_t* inputs, const int32_t* targets, const LossWeights& w,
                                   double token_scale, double sequence_scale, bool backward) {
  const ModelConfig &s = student_.config(), &t = teacher_.config();
  const int64_t B = student_.batch(), Tn = student_.seq_len(), N = B * Tn;
  LossTerms terms;
  terms.sequences = B;
  const LossSum ce = student_.forward(inputs, targets);
  terms.hard = ce.sum;
  terms.targets = ce.targets;
  const bool need_teacher = w.soft > 0 || w.hidden > 0 || w.attention > 0;
  if (need_teacher) teacher_.forward(inputs, nullptr);

  if (w.hidden > 0)
    for (size_t k = 0; k < c_.hidden_map.size(); ++k) {
      const LayerPair& p = c_.hidden_map[k];
      const ParameterInfo &wi = proj_layout_.tensors[2 * k], &bi = proj_layout_.tensors[2 * k + 1];
      std::fill(dhidden_[k].begin(), dhidden_[k].end(), T(0));
      terms.hidden += hidden_loss(backward ? dhidden_[k].data() : nullptr, backward ? dproj_.data() + wi.offset : nullptr,
                                  backward ? dproj_.data() + bi.offset : nullptr, student_.hidden_state(p.student),
                                  teacher_.hidden_state(p.teacher), proj_.data() + wi.offset, proj_.data() + bi.offset,
                                  N, s.hidden_size, t.hidden_size, c_.hidden_loss, targets, w.hidden * token_scale);
    }
  if (w.attention > 0)
    for (size_t k = 0; k < c_.attention_map.size(); ++k) {
      const LayerPair& p = c_.attention_map[k];
      std::fill(dattention_[k].begin(), dattention_[k].end(), T(0));
      terms.attention += attention_loss(backward ? dattention_[k].data() : nullptr, student_.attention_probs(p.student),
                                        teacher_.attention_probs(p.teacher), B, s.num_heads, t.num_heads, Tn,
                                        c_.attention_loss, w.attention * sequence_scale);
    }

  if (!backward) {
    if (w.soft > 0) terms.soft = soft_and_hard(const_cast<T*>(student_.logits()), false, w.hard, w.soft, token_scale);
    return terms;
  }
  BackwardHooks<T> hooks;
  hooks.logits_gradient = [&](T* logits) { terms.soft = soft_and_hard(logits, true, w.hard, w.soft, token_scale); };
  if (w.hidden > 0)
    hooks.hidden_gradient = [&](int64_t i, T* dx) {
      for (size_t k = 0; k < c_.hidden_map.size(); ++k)
        if (c_.hidden_map[k].student == i)
          for (int64_t j = 0; j < N * s.hidden_size; ++j) dx[j] += dhidden_[k][size_t(j)];
    };
  if (w.attention > 0)
    hooks.attention_gradient = [&](int64_t l, T* dqkv, const T* qkv, const T* att) {
      for (size_t k = 0; k < c_.attention_map.size(); ++k)
        if (c_.attention_map[k].student == l)
          attention_probs_backward(dqkv, dattention_[k].data(), qkv, att,
                                   AttentionDims{B, Tn, s.num_heads, s.num_kv_heads, s.head_dim});
    };
  student_.set_backward_hooks(std::move(hooks));
  student_.backward(token_scale);
  student_.set_backward_hooks({});
  return terms;
}

template <typename T>
double DistillObjective<T>::teacher_loss(const int32_t* inputs, const int32_t* targets) {
  const int64_t N = teacher_.batch() * teacher_.seq_len(), Vt = teacher_.config().vocab_size;
  const int64_t chunk = std::min(c_.chunk_rows, N);
  teacher_.forward(inputs, nullptr);
  std::vector<int64_t> rows;  // the positions with a target: only they have a loss
  std::vector<int32_t> row_targets;
  rows_with_targets(targets, N, rows, row_targets);
  const auto M = static_cast<int64_t>(rows.size());
  double sum = 0;
  for (int64_t r0 = 0; r0 < M; r0 += chunk) {
    const int64_t r1 = std::min(M, r0 + chunk);
    teacher_logits(rows.data() + r0, r1 - r0);
    sum += hard_ce_loss<T>(nullptr, teacher_chunk_.data(), row_targets.data() + r0, r1 - r0, Vt, 1.0);
  }
  return sum;
}

template class DistillObjective<float>;
template class DistillObjective<double>;

}  // namespace retort::train
