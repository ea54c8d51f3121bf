#include "train/kd_losses.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>
#include <vector>

#include "kernels/cpu/softmax_kernels.h"
#include "train/layers.h"
#include "train/softmax_rows.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort::train {

namespace {

// Row losses are computed in parallel into a vector and summed in row order afterwards, so the
// result does not depend on how the rows were split across threads.
template <typename Body>
double sum_over_rows(int64_t N, int64_t grain, Body&& row_loss) {
  std::vector<double> losses(static_cast<size_t>(N), 0.0);
  thread_pool().parallel_for(static_cast<size_t>(N), static_cast<size_t>(grain), [&](size_t begin, size_t end) {
    for (size_t n = begin; n < end; ++n) losses[n] = row_loss(int64_t(n));
  });
  return std::accumulate(losses.begin(), losses.end(), 0.0);
}

// log softmax(z / temperature) of one row, in double.
template <typename T>
void log_softmax(double* out, const T* z, int64_t V, double temperature) {
  double max = -INFINITY;
  for (int64_t v = 0; v < V; ++v) max = std::max(max, double(z[v]) / temperature);
  double sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(double(z[v]) / temperature - max);
  const double log_norm = max + std::log(sum);
  for (int64_t v = 0; v < V; ++v) out[v] = double(z[v]) / temperature - log_norm;
}

std::vector<double>& scratch(int slot, size_t size) {
  thread_local std::vector<double> buffers[3];
  if (buffers[slot].size() < size) buffers[slot].resize(size);
  return buffers[slot];
}

bool skipped(const int32_t* targets, int64_t n) { return targets != nullptr && targets[n] < 0; }

// The f32 rows of the two terms every distillation run has (hard CE, forward KL), on the
// vectorised softmax kernels: over a 151,936-entry vocabulary the double loops below cost several
// times the student's own step. The other divergences and the f64 path (gradient checks) keep them.

// −log p_s[label]; d += scale · (p_s − onehot(label)).
double hard_ce_row_f32(float* d, const float* z, int32_t label, int64_t V, double scale) {
  const TargetRowStats stats = target_row_stats(z, V, label);
  if (d != nullptr) {
    const float before = d[label];
    cpu::active_softmax_kernels().exp_accumulate(d, z, V, float(stats.max), 1.0f, float(scale / stats.sum()));
    d[label] = float(before + scale * stats.target_probability_minus_one());
  }
  return stats.loss(double(z[label]));
}

// T² · KL(p_t ‖ p_s) with p = softmax(z / T): Σ p_t (t − s) + lse(s) − lse(t) in the z/T space;
// d += scale · T · (p_s − p_t).
double forward_kl_row_f32(float* d, const float* zs, const float* zt, int64_t V, double temperature, double scale) {
  const auto& k = cpu::active_softmax_kernels();
  const float inv_t = float(1.0 / temperature);
  const float max_s = k.row_max(zs, V), max_t = k.row_max(zt, V);
  const double sum_s = k.sum_exp(zs, V, max_s, inv_t), sum_t = k.sum_exp(zt, V, max_t, inv_t);
  const double lse_s = double(max_s) * inv_t + std::log(sum_s), lse_t = double(max_t) * inv_t + std::log(sum_t);
  const double cross = k.sum_exp_times_difference(zt, zs, V, max_t, inv_t) / sum_t * inv_t;
  if (d != nullptr) {
    const double g = scale * temperature;  // T² from the loss, 1/T from z/T
    k.exp_accumulate(d, zs, V, max_s, inv_t, float(g / sum_s));
    k.exp_accumulate(d, zt, V, max_t, inv_t, float(-g / sum_t));
  }
  return temperature * temperature * std::max(0.0, cross + lse_s - lse_t);
}

// T² · Σ_j p_t[j] (log p_t[j] − log p_s[id_j]) against a teacher kept to k (ids, values), p_t
// renormalised over those k and p_s over all V; d += scale · T · (p_s − p_t on the k ids).
double forward_kl_top_k_row_f32(float* d, const float* zs, const int32_t* ids, const float* values, int64_t V,
                                int64_t k, double temperature, double scale) {
  const auto& kernels = cpu::active_softmax_kernels();
  const double inv_t = 1.0 / temperature;
  const float max_s = kernels.row_max(zs, V);
  const double lse_s = double(max_s) * inv_t + std::log(kernels.sum_exp(zs, V, max_s, float(inv_t)));
  double max_t = -INFINITY, sum_t = 0;
  for (int64_t j = 0; j < k; ++j) max_t = std::max(max_t, double(values[j]) * inv_t);
  for (int64_t j = 0; j < k; ++j) sum_t += std::exp(double(values[j]) * inv_t - max_t);
  const double lse_t = max_t + std::log(sum_t);
  double loss = 0;
  for (int64_t j = 0; j < k; ++j) {
    const double lt = double(values[j]) * inv_t - lse_t;
    loss += std::exp(lt) * (lt - (double(zs[ids[j]]) * inv_t - lse_s));
  }
  if (d != nullptr) {
    const double c = scale * temperature;  // T² / T
    kernels.exp_accumulate(d, zs, V, max_s, float(inv_t), float(c * std::exp(double(max_s) * inv_t - lse_s)));
    for (int64_t j = 0; j < k; ++j) d[ids[j]] -= float(c * std::exp(double(values[j]) * inv_t - lse_t));
  }
  return temperature * temperature * loss;
}

// The k largest of row[0..V) by value, ties to the lower id, in one pass: each entry is compared
// with the k-th best so far and only the few that beat it are inserted (a partial sort over a
// 151,936-entry row cost more than the loss).
template <typename T>
void top_k_of_row(int32_t* ids, T* values, const T* row, int64_t V, int64_t k) {
  int64_t kept = 0;
  for (int64_t v = 0; v < V; ++v) {
    const T x = row[v];
    if (kept == k && !(x > values[k - 1])) continue;  // an equal value has a higher id: it loses the tie
    int64_t at = kept < k ? kept++ : k - 1;
    for (; at > 0 && x > values[at - 1]; --at) {
      values[at] = values[at - 1];
      ids[at] = ids[at - 1];
    }
    values[at] = x;
    ids[at] = int32_t(v);
  }
}

}  // namespace

SoftLossKind parse_soft_loss_kind(const std::string& name) {
  if (name == "forward_kl") return SoftLossKind::ForwardKL;
  if (name == "reverse_kl") return SoftLossKind::ReverseKL;
  if (name == "jsd") return SoftLossKind::JSD;
  fail(ErrorKind::InvalidInput, "unknown soft loss '{}'; expected forward_kl, reverse_kl or jsd", name);
}

HiddenLossKind parse_hidden_loss_kind(const std::string& name) {
  if (name == "mse") return HiddenLossKind::MSE;
  if (name == "cosine") return HiddenLossKind::Cosine;
  fail(ErrorKind::InvalidInput, "unknown hidden-state loss '{}'; expected mse or cosine", name);
}

AttentionLossKind parse_attention_loss_kind(const std::string& name) {
  if (name == "mse") return AttentionLossKind::MSE;
  if (name == "kl") return AttentionLossKind::KL;
  fail(ErrorKind::InvalidInput, "unknown attention loss '{}'; expected mse or kl", name);
}

template <typename T>
double hard_ce_loss(T* dstudent, const T* student, const int32_t* labels, int64_t N, int64_t V, double scale) {
  return sum_over_rows(N, 4, [&](int64_t n) -> double {
    if (labels[n] < 0) return 0.0;
    require(labels[n] < V, ErrorKind::OutOfRange, "label {} is outside the vocabulary 0..{}", labels[n], V - 1);
    if constexpr (std::is_same_v<T, float>)
      return hard_ce_row_f32(dstudent == nullptr ? nullptr : dstudent + n * V, student + n * V, labels[n], V, scale);
    double* lp = scratch(0, size_t(V)).data();
    log_softmax(lp, student + n * V, V, 1.0);
    if (dstudent != nullptr) {
      T* d = dstudent + n * V;
      for (int64_t v = 0; v < V; ++v) d[v] += T(scale * (std::exp(lp[v]) - (v == labels[n] ? 1.0 : 0.0)));
    }
    return -lp[labels[n]];
  });
}

// Per row, with s = z_s / T and the loss L(p_s): dL/dz_s = (1/T) · p_s ⊙ (g − Σ p_s g), g = dL/dp_s
// (through the softmax). Each kind's value and g are written out below; the T² factor keeps the
// gradient's size independent of T (Hinton et al.).
template <typename T>
double soft_loss(T* dstudent, const T* student, const T* teacher, int64_t teacher_stride, int64_t N, int64_t V,
                 const SoftLossOptions& o, const int32_t* targets, double scale) {
  require(teacher_stride >= V, ErrorKind::InvalidInput,
          "the teacher's vocabulary ({}) is smaller than the student's ({}): they cannot share a tokenizer",
          teacher_stride, V);
  require(o.temperature > 0, ErrorKind::InvalidInput, "temperature must be positive, got {}", o.temperature);
  require(o.kind != SoftLossKind::JSD || (o.beta > 0 && o.beta < 1), ErrorKind::InvalidInput, "JSD beta must be in (0, 1), got {}", o.beta);
  const double Tmp = o.temperature, T2 = Tmp * Tmp, beta = o.beta;
  return sum_over_rows(N, 4, [&](int64_t n) -> double {
    if (skipped(targets, n)) return 0.0;
    if constexpr (std::is_same_v<T, float>)
      if (o.kind == SoftLossKind::ForwardKL)
        return forward_kl_row_f32(dstudent == nullptr ? nullptr : dstudent + n * V, student + n * V,
                                  teacher + n * teacher_stride, V, Tmp, scale);
    double* ls = scratch(0, size_t(V)).data();
    double* lt = scratch(1, size_t(V)).data();
    double* g = scratch(2, size_t(V)).data();
    log_softmax(ls, student + n * V, V, Tmp);
    log_softmax(lt, teacher + n * teacher_stride, V, Tmp);
    double loss = 0;
    switch (o.kind) {
      case SoftLossKind::ForwardKL:  // L = Σ p_t (log p_t − log p_s); dL/ds = p_s − p_t directly
        for (int64_t v = 0; v < V; ++v) {
          const double pt = std::exp(lt[v]);
          loss += pt * (lt[v] - ls[v]);
          g[v] = std::exp(ls[v]) - pt;
        }
        break;
      case SoftLossKind::ReverseKL: {  // L = Σ p_s (log p_s − log p_t); g = log p_s − log p_t + 1
        for (int64_t v = 0; v < V; ++v) loss += std::exp(ls[v]) * (ls[v] - lt[v]);
        for (int64_t v = 0; v < V; ++v) g[v] = std::exp(ls[v]) * (ls[v] - lt[v] - loss);
        break;
      }
      case SoftLossKind::JSD: {  // L = β Σ p_t log p_t + (1−β) Σ p_s log p_s − Σ m log m; g = (1−β)(log p_s − log m)
        const double lb = std::log(beta), l1b = std::log1p(-beta);
        double mean_g = 0;
        for (int64_t v = 0; v < V; ++v) {
          const double a = lb + lt[v], b = l1b + ls[v];
          const double lm = std::max(a, b) + std::log1p(std::exp(-std::abs(a - b)));  // log m
          const double pt = std::exp(lt[v]), ps = std::exp(ls[v]);
          loss += beta * pt * (lt[v] - lm) + (1 - beta) * ps * (ls[v] - lm);
          g[v] = (1 - beta) * (ls[v] - lm);
          mean_g += ps * g[v];
        }
        for (int64_t v = 0; v < V; ++v) g[v] = std::exp(ls[v]) * (g[v] - mean_g);
        break;
      }
    }
    if (dstudent != nullptr) {
      T* d = dstudent + n * V;
      const double k = scale * T2 / Tmp;
      for (int64_t v = 0; v < V; ++v) d[v] += T(k * g[v]);
    }
    return T2 * loss;
  });
}

template <typename T>
void top_k_rows(int32_t* ids, T* values, const T* logits, int64_t stride, int64_t N, int64_t V, int64_t k) {
  require(k > 0 && k <= V, ErrorKind::InvalidInput, "top_k must be in 1..{} (the vocabulary), got {}", V, k);
  thread_pool().parallel_for(size_t(N), 1, [&](size_t begin, size_t end) {
    for (size_t n = begin; n < end; ++n)
      top_k_of_row(ids + int64_t(n) * k, values + int64_t(n) * k, logits + int64_t(n) * stride, V, k);
  });
}

template <typename T>
double soft_loss_top_k(T* dstudent, const T* student, const int32_t* ids, const T* values, int64_t N, int64_t V,
                       int64_t k, double temperature, const int32_t* targets, double scale) {
  const double Tmp = temperature;
  return sum_over_rows(N, 4, [&](int64_t n) -> double {
    if (skipped(targets, n)) return 0.0;
    if constexpr (std::is_same_v<T, float>)
      return forward_kl_top_k_row_f32(dstudent == nullptr ? nullptr : dstudent + n * V, student + n * V, ids + n * k,
                                      values + n * k, V, k, Tmp, scale);
    double* ls = scratch(0, size_t(V)).data();
    double* lt = scratch(1, size_t(k)).data();
    log_softmax(ls, student + n * V, V, Tmp);
    log_softmax(lt, values + n * k, k, Tmp);
    double loss = 0;
    for (int64_t j = 0; j < k; ++j) loss += std::exp(lt[j]) * (lt[j] - ls[ids[n * k + j]]);
    if (dstudent != nullptr) {
      T* d = dstudent + n * V;
      const double c = scale * Tmp;  // T² / T
      for (int64_t v = 0; v < V; ++v) d[v] += T(c * std::exp(ls[v]));
      for (int64_t j = 0; j < k; ++j) d[ids[n * k + j]] -= T(c * std::exp(lt[j]));
    }
    return Tmp * Tmp * loss;
  });
}

template <typename T>
double hidden_loss(T* dhs, T* dW, T* db, const T* hs, const T* ht, const T* W, const T* b, int64_t N, int64_t ds,
                   int64_t dt, HiddenLossKind kind, const int32_t* targets, double scale) {
  std::vector<T> y(static_cast<size_t>(N * dt)), dy(static_cast<size_t>(N * dt), T(0));
  linear_forward(y.data(), hs, W, b, N, ds, dt);
  const double loss = sum_over_rows(N, 4, [&](int64_t n) -> double {
    if (skipped(targets, n)) return 0.0;
    const T* yr = y.data() + n * dt;
    const T* tr = ht + n * dt;
    T* dyr = dy.data() + n * dt;
    if (kind == HiddenLossKind::MSE) {
      double sum = 0;
      for (int64_t d = 0; d < dt; ++d) {
        const double e = double(yr[d]) - double(tr[d]);
        sum += e * e;
        dyr[d] = T(scale * 2.0 * e / double(dt));
      }
      return sum / double(dt);
    }
    // 1 − cos(y, t) = 1 − y·t / (|y||t|); d/dy = −(t / (|y||t|) − cos · y / |y|²)
    double yt = 0, yy = 0, tt = 0;
    for (int64_t d = 0; d < dt; ++d) {
      yt += double(yr[d]) * double(tr[d]);
      yy += double(yr[d]) * double(yr[d]);
      tt += double(tr[d]) * double(tr[d]);
    }
    const double ny = std::sqrt(std::max(yy, 1e-24)), nt = std::sqrt(std::max(tt, 1e-24)), cos = yt / (ny * nt);
    for (int64_t d = 0; d < dt; ++d)
      dyr[d] = T(-scale * (double(tr[d]) / (ny * nt) - cos * double(yr[d]) / (ny * ny)));
    return 1.0 - cos;
  });
  if (dhs != nullptr || dW != nullptr || db != nullptr) {
    std::vector<T> dinp(static_cast<size_t>(N * ds)), dW_local, db_local;
    if (dW == nullptr) dW_local.assign(static_cast<size_t>(dt * ds), T(0));
    if (db == nullptr) db_local.assign(static_cast<size_t>(dt), T(0));
    linear_backward(dinp.data(), dW != nullptr ? dW : dW_local.data(), db != nullptr ? db : db_local.data(),
                    dy.data(), hs, W, N, ds, dt);
    if (dhs != nullptr)
      for (size_t i = 0; i < dinp.size(); ++i) dhs[i] += dinp[i];
  }
  return loss;
}

template <typename T>
double attention_loss(T* datt_s, const T* att_s, const T* att_t, int64_t B, int64_t Hs, int64_t Ht, int64_t Tn,
                      AttentionLossKind kind, double scale) {
  const int64_t TT = Tn * Tn;
  return sum_over_rows(B, 1, [&](int64_t b) -> double {
    std::vector<double> as(static_cast<size_t>(TT), 0.0), at(static_cast<size_t>(TT), 0.0);
    for (int64_t h = 0; h < Hs; ++h)
      for (int64_t i = 0; i < TT; ++i) as[size_t(i)] += double(att_s[(b * Hs + h) * TT + i]) / double(Hs);
    for (int64_t h = 0; h < Ht; ++h)
      for (int64_t i = 0; i < TT; ++i) at[size_t(i)] += double(att_t[(b * Ht + h) * TT + i]) / double(Ht);
    double loss = 0;
    std::vector<double> g(static_cast<size_t>(TT), 0.0);  // d loss / d Ā_s
    for (int64_t q = 0; q < Tn; ++q)
      for (int64_t k = 0; k <= q; ++k) {
        const size_t i = size_t(q * Tn + k);
        if (kind == AttentionLossKind::MSE) {
          const double e = as[i] - at[i];
          loss += e * e / double(TT);
          g[i] = 2.0 * e / double(TT);
        } else if (at[i] > 0) {
          loss += at[i] * (std::log(at[i]) - std::log(as[i])) / double(Tn);
          g[i] = -at[i] / as[i] / double(Tn);
        }
      }
    if (datt_s != nullptr)
      for (int64_t h = 0; h < Hs; ++h)
        for (int64_t i = 0; i < TT; ++i) datt_s[(b * Hs + h) * TT + i] += T(scale * g[size_t(i)] / double(Hs));
    return loss;
  });
}

template <typename T>
void causal_softmax_forward(T* probs, const T* scores, int64_t heads, int64_t Tn) {
  std::vector<double> lp(static_cast<size_t>(Tn));
  for (int64_t r = 0; r < heads * Tn; ++r) {
    const int64_t t = r % Tn;
    log_softmax(lp.data(), scores + r * Tn, t + 1, 1.0);
    for (int64_t k = 0; k < Tn; ++k) probs[r * Tn + k] = k <= t ? T(std::exp(lp[size_t(k)])) : T(0);
  }
}

template <typename T>
void causal_softmax_backward(T* dscores, const T* dprobs, const T* probs, int64_t heads, int64_t Tn) {
  for (int64_t r = 0; r < heads * Tn; ++r) {
    const int64_t t = r % Tn;
    const T* p = probs + r * Tn;
    const T* dp = dprobs + r * Tn;
    double dot = 0;
    for (int64_t k = 0; k <= t; ++k) dot += double(p[k]) * double(dp[k]);
    for (int64_t k = 0; k <= t; ++k) dscores[r * Tn + k] += T(double(p[k]) * (double(dp[k]) - dot));
  }
}

template <typename T>
void attention_probs_backward(T* dqkv, const T* datt, const T* qkv, const T* att, const AttentionDims& d) {
  const int64_t S = d.qkv_stride(), hd = d.head_dim, Tn = d.T, group = d.H / d.KV;
  const T scale = T(1.0 / std::sqrt(double(hd)));
  std::vector<T> dscores(static_cast<size_t>(Tn * Tn));
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.H; ++h) {
      const int64_t g = h / group, head = b * d.H + h;
      std::fill(dscores.begin(), dscores.end(), T(0));
      causal_softmax_backward(dscores.data(), datt + head * Tn * Tn, att + head * Tn * Tn, 1, Tn);
      const T* q = qkv + b * Tn * S + h * hd;
      const T* k = qkv + b * Tn * S + (d.H + g) * hd;
      T* dq = dqkv + b * Tn * S + h * hd;
      T* dk = dqkv + b * Tn * S + (d.H + g) * hd;
      gemm<T>(false, false, Tn, hd, Tn, scale, dscores.data(), Tn, k, S, T(1), dq, S);  // dQ += dS·K / √hd
      gemm<T>(true, false, Tn, hd, Tn, scale, dscores.data(), Tn, q, S, T(1), dk, S);   // dK += dSᵀ·Q / √hd
    }
}

#define RETORT_INSTANTIATE_KD(T)                                                                                   \
  template double hard_ce_loss<T>(T*, const T*, const int32_t*, int64_t, int64_t, double);                        \
  template double soft_loss<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, const SoftLossOptions&,         \
                               const int32_t*, double);                                                          \
  template void top_k_rows<T>(int32_t*, T*, const T*, int64_t, int64_t, int64_t, int64_t);                        \
  template double soft_loss_top_k<T>(T*, const T*, const int32_t*, const T*, int64_t, int64_t, int64_t, double,   \
                                     const int32_t*, double);                                                    \
  template double hidden_loss<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,   \
                                 HiddenLossKind, const int32_t*, double);                                        \
  template double attention_loss<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, AttentionLossKind, \
                                    double);                                                                     \
  template void causal_softmax_forward<T>(T*, const T*, int64_t, int64_t);                                        \
  template void causal_softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);                            \
  template void attention_probs_backward<T>(T*, const T*, const T*, const T*, const AttentionDims&);

RETORT_INSTANTIATE_KD(float)
RETORT_INSTANTIATE_KD(double)

}  // namespace retort::train
