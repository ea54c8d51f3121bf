#include "train/layers.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/bf16_gemm.h"
#include "tensor/dtype.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort::train {

namespace {

void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}
void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
               const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

// Splits [0, count) into pieces of at least `grain` for the pool.
template <typename Body>
void parallel_rows(int64_t count, int64_t grain, Body&& body) {
  thread_pool().parallel_for(static_cast<size_t>(count), static_cast<size_t>(std::max<int64_t>(grain, 1)),
                             [&](size_t begin, size_t end) { body(int64_t(begin), int64_t(end)); });
}

}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  constexpr int64_t kPanel = 32;
  if (M * N * K < (int64_t(1) << 18) || thread_pool().size() == 1) {
    blas_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // One contiguous block of panels per thread: every extra BLAS call packs the other operand again.
  const int64_t parts = thread_pool().size();
  const bool split_rows = M >= N;
  const int64_t panels = ((split_rows ? M : N) + kPanel - 1) / kPanel;
  parallel_rows(parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t part = begin; part < end; ++part) {
      const int64_t first = panels * part / parts * kPanel, last = panels * (part + 1) / parts * kPanel;
      if (split_rows) {
        const int64_t m0 = first, m1 = std::min(M, last);
        if (m1 <= m0) continue;
        const T* a = trans_a ? A + m0 : A + m0 * lda;
        blas_gemm(trans_a, trans_b, m1 - m0, N, K, alpha, a, lda, B, ldb, beta, C + m0 * ldc, ldc);
      } else {
        const int64_t n0 = first, n1 = std::min(N, last);
        if (n1 <= n0) continue;
        const T* b = trans_b ? B + n0 * ldb : B + n0;
        blas_gemm(trans_a, trans_b, M, n1 - n0, K, alpha, A, lda, b, ldb, beta, C + n0, ldc);
      }
    }
  });
}

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int64_t N, int64_t C) {
  parallel_rows(N, 16, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) std::copy_n(wte + int64_t(tokens[n]) * C, C, out + n * C);
  });
}

template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int64_t N, int64_t C) {
  // Serial over rows: two rows may name the same token, and a fixed order keeps results exact.
  for (int64_t n = 0; n < N; ++n) {
    T* row = dwte + int64_t(tokens[n]) * C;
    const T* d = dout + n * C;
    for (int64_t c = 0; c < C; ++c) row[c] += d[c];
  }
}

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t C, double eps) {
  parallel_rows(N, 8, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* x = inp + n * C;
      double sum = 0;
      for (int64_t c = 0; c < C; ++c) sum += double(x[c]) * double(x[c]);
      const T r = T(1.0 / std::sqrt(sum / double(C) + eps));
      T* y = out + n * C;
      for (int64_t c = 0; c < C; ++c) y[c] = x[c] * r * weight[c];
      rstd[n] = r;
    }
  });
}

template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int64_t N,
                      int64_t C) {
  // y = w ⊙ x·r with r = (mean x² + ε)^(−1/2):  dx = r·(w⊙dy) − x·r³/C · Σ (w⊙dy⊙x)
  parallel_rows(N, 8, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* x = inp + n * C;
      const T* dy = dout + n * C;
      const double r = double(rstd[n]);
      double dot = 0;
      for (int64_t c = 0; c < C; ++c) dot += double(weight[c]) * double(dy[c]) * double(x[c]);
      const T k = T(dot * r * r * r / double(C));
      T* dx = dinp + n * C;
      for (int64_t c = 0; c < C; ++c) dx[c] += T(r) * weight[c] * dy[c] - x[c] * k;
    }
  });
  // Weight gradient: split over columns so each sum runs over rows in a fixed order.
  parallel_rows(C, 64, [&](int64_t begin, int64_t end) {
    for (int64_t n = 0; n < N; ++n) {
      const T* x = inp + n * C;
      const T* dy = dout + n * C;
      const T r = rstd[n];
      for (int64_t c = begin; c < end; ++c) dweight[c] += dy[c] * x[c] * r;
    }
  });
}

namespace {
// A stored rows × cols matrix (leading dimension ld) with every element rounded to IEEE half and
// back: exactly the values an f16 operand holds (inf past 65504, zero below 6e-8).
std::vector<float> rounded_to_f16(const float* x, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(size_t(rows * ld));
  parallel_rows(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t c = 0; c < cols; ++c) out[size_t(r * ld + c)] = f16_to_f32(f32_to_f16(x[r * ld + c]));
  });
  return out;
}

// C = op(A)·op(B) (+ C when accumulate) at the linear layers' precision.
void linear_gemm(MatmulPrecision precision, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A,
                 int64_t lda, const float* B, int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  if (precision == MatmulPrecision::bf16) return cpu::gemm_bf16(ta, tb, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
  if (precision == MatmulPrecision::f16) {
    // No f16 arithmetic on these CPUs: the rounded operands multiplied in f32 give the f16 unit's
    // products (each exact in f32) summed in f32.
    const std::vector<float> a = rounded_to_f16(A, ta ? K : M, ta ? M : K, lda);
    const std::vector<float> b = rounded_to_f16(B, tb ? N : K, tb ? K : N, ldb);
    return gemm<float>(ta, tb, M, N, K, 1.0f, a.data(), lda, b.data(), ldb, accumulate ? 1.0f : 0.0f, C, ldc);
  }
  gemm<float>(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C, ldc);
}
void linear_gemm(MatmulPrecision precision, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double* A,
                 int64_t lda, const double* B, int64_t ldb, bool accumulate, double* C, int64_t ldc) {
  require(precision == MatmulPrecision::f32, ErrorKind::Unsupported,
          "bf16 and f16 matrix products are for float models only");
  gemm<double>(ta, tb, M, N, K, 1.0, A, lda, B, ldb, accumulate ? 1.0 : 0.0, C, ldc);
}
}  // namespace

template <typename T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t N, int64_t C, int64_t OC,
                    MatmulPrecision precision) {
  if (bias != nullptr) {
    for (int64_t n = 0; n < N; ++n) std::copy_n(bias, OC, out + n * OC);
  }
  linear_gemm(precision, false, true, N, OC, C, inp, C, weight, C, bias != nullptr, out, OC);
}

template <typename T>
void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int64_t N,
                     int64_t C, int64_t OC, MatmulPrecision precision) {
  linear_gemm(precision, false, false, N, C, OC, dout, OC, weight, C, false, dinp, C);  // dinp = dout · W
  linear_gemm(precision, true, false, OC, C, N, dout, OC, inp, C, true, dweight, C);    // dW += doutᵀ · inp
  if (dbias != nullptr) {
    parallel_rows(OC, 64, [&](int64_t begin, int64_t end) {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = begin; o < end; ++o) dbias[o] += dout[n * OC + o];
    });
  }
}

namespace {
template <typename T>
void rotate(T* x, const T* cos, const T* sin, int64_t N, int64_t seq_len, int64_t stride, int64_t heads,
            int64_t head_dim, T direction) {
  const int64_t half = head_dim / 2;
  parallel_rows(N, 8, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* c = cos + (n % seq_len) * half;
      const T* s = sin + (n % seq_len) * half;
      for (int64_t h = 0; h < heads; ++h) {
        T* v = x + n * stride + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const T a = v[i], b = v[i + half], sn = direction * s[i];
          v[i] = a * c[i] - b * sn;
          v[i + half] = b * c[i] + a * sn;
        }
      }
    }
  });
}
}  // namespace

template <typename T>
void rope_forward(T* x, const T* cos, const T* sin, int64_t N, int64_t seq_len, int64_t row_stride, int64_t heads,
                  int64_t head_dim) {
  rotate(x, cos, sin, N, seq_len, row_stride, heads, head_dim, T(1));
}

template <typename T>
void rope_backward(T* dx, const T* cos, const T* sin, int64_t N, int64_t seq_len, int64_t row_stride,
                   int64_t heads, int64_t head_dim) {
  rotate(dx, cos, sin, N, seq_len, row_stride, heads, head_dim, T(-1));
}

template <typename T>
void attention_forward(T* out, T* att, const T* qkv, const AttentionDims& d) {
  const int64_t S = d.qkv_stride(), hd = d.head_dim, Tn = d.T, group = d.H / d.KV;
  const T scale = T(1.0 / std::sqrt(double(hd)));
  parallel_rows(d.B * d.H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / d.H, h = task % d.H, g = h / group;
      const T* q = qkv + b * Tn * S + h * hd;
      const T* k = qkv + b * Tn * S + (d.H + g) * hd;
      const T* v = qkv + b * Tn * S + (d.H + d.KV + g) * hd;
      T* p = att + task * Tn * Tn;
      gemm<T>(false, true, Tn, Tn, hd, scale, q, S, k, S, T(0), p, Tn);  // scores (upper half unused)
      for (int64_t t = 0; t < Tn; ++t) {
        T* row = p + t * Tn;
        T max = row[0];
        for (int64_t j = 1; j <= t; ++j) max = std::max(max, row[j]);
        double sum = 0;
        for (int64_t j = 0; j <= t; ++j) {
          row[j] = std::exp(row[j] - max);
          sum += double(row[j]);
        }
        const T inv = T(1.0 / sum);
        for (int64_t j = 0; j <= t; ++j) row[j] *= inv;
        std::fill(row + t + 1, row + Tn, T(0));
      }
      gemm<T>(false, false, Tn, hd, Tn, T(1), p, Tn, v, S, T(0), out + b * Tn * d.H * hd + h * hd, d.H * hd);
    }
  });
}

template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, const AttentionDims& d) {
  const int64_t S = d.qkv_stride(), hd = d.head_dim, Tn = d.T, group = d.H / d.KV, O = d.H * hd;
  const T scale = T(1.0 / std::sqrt(double(hd)));
  // One task per (sequence, kv head): the query heads of a group all add into its dK and dV.
  parallel_rows(d.B * d.KV, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<T> dp;  // kept across calls: a fresh T×T buffer per call costs page faults
    if (dp.size() < static_cast<size_t>(Tn * Tn)) dp.resize(static_cast<size_t>(Tn * Tn));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / d.KV, g = task % d.KV;
      const T* base = qkv + b * Tn * S;
      T* dbase = dqkv + b * Tn * S;
      T* dk = dbase + (d.H + g) * hd;
      T* dv = dbase + (d.H + d.KV + g) * hd;
      for (int64_t t = 0; t < Tn; ++t) {
        std::fill_n(dk + t * S, hd, T(0));
        std::fill_n(dv + t * S, hd, T(0));
      }
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        const T* p = att + (b * d.H + h) * Tn * Tn;
        const T* dy = dout + b * Tn * O + h * hd;
        const T* q = base + h * hd;
        const T* v = base + (d.H + d.KV + g) * hd;
        const T* k = base + (d.H + g) * hd;
        gemm<T>(false, true, Tn, Tn, hd, T(1), dy, O, v, S, T(0), dp.data(), Tn);  // dP = dY · Vᵀ
        gemm<T>(true, false, Tn, hd, Tn, T(1), p, Tn, dy, O, T(1), dv, S);         // dV += Pᵀ · dY
        for (int64_t t = 0; t < Tn; ++t) {  // dS = P ⊙ (dP − Σ P⊙dP), scaled for the score's 1/√d
          const T* prow = p + t * Tn;
          T* row = dp.data() + t * Tn;
          double dot = 0;
          for (int64_t j = 0; j <= t; ++j) dot += double(prow[j]) * double(row[j]);
          for (int64_t j = 0; j <= t; ++j) row[j] = prow[j] * (row[j] - T(dot)) * scale;
          std::fill(row + t + 1, row + Tn, T(0));
        }
        gemm<T>(false, false, Tn, hd, Tn, T(1), dp.data(), Tn, k, S, T(0), dbase + h * hd, S);  // dQ = dS · K
        gemm<T>(true, false, Tn, hd, Tn, T(1), dp.data(), Tn, q, S, T(1), dk, S);              // dK += dSᵀ · Q
      }
    }
  });
}

template <typename T>
void swiglu_forward(T* out, const T* gate_up, int64_t N, int64_t F) {
  parallel_rows(N, 4, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* gate = gate_up + n * 2 * F;
      const T* up = gate + F;
      T* y = out + n * F;
      for (int64_t f = 0; f < F; ++f) y[f] = gate[f] / (T(1) + std::exp(-gate[f])) * up[f];
    }
  });
}

template <typename T>
void swiglu_backward(T* dgate_up, const T* dout, const T* gate_up, int64_t N, int64_t F) {
  // silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 − σ(g)))
  parallel_rows(N, 4, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* gate = gate_up + n * 2 * F;
      const T* up = gate + F;
      const T* dy = dout + n * F;
      T* dgate = dgate_up + n * 2 * F;
      T* dup = dgate + F;
      for (int64_t f = 0; f < F; ++f) {
        const T sig = T(1) / (T(1) + std::exp(-gate[f]));
        dup[f] = dy[f] * gate[f] * sig;
        dgate[f] = dy[f] * up[f] * sig * (T(1) + gate[f] * (T(1) - sig));
      }
    }
  });
}

template <typename T>
void residual_forward(T* out, const T* a, const T* b, int64_t n) {
  parallel_rows(n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = a[i] + b[i];
  });
}

#define RETORT_INSTANTIATE_LAYERS(T)                                                                              \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, T*,   \
                        int64_t);                                                                                  \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t);                            \
  template void embedding_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t);                           \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, double);                        \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t);           \
  template void linear_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, MatmulPrecision); \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,         \
                                   MatmulPrecision);                                                             \
  template void rope_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t);            \
  template void rope_backward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t);           \
  template void attention_forward<T>(T*, T*, const T*, const AttentionDims&);                                    \
  template void attention_backward<T>(T*, const T*, const T*, const T*, const AttentionDims&);                   \
  template void swiglu_forward<T>(T*, const T*, int64_t, int64_t);                                               \
  template void swiglu_backward<T>(T*, const T*, const T*, int64_t, int64_t);                                    \
  template void residual_forward<T>(T*, const T*, const T*, int64_t);

RETORT_INSTANTIATE_LAYERS(float)
RETORT_INSTANTIATE_LAYERS(double)

void rows_with_targets(const int32_t* targets, int64_t N, std::vector<int64_t>& rows,
                       std::vector<int32_t>& row_targets) {
  rows.clear();
  row_targets.clear();
  for (int64_t n = 0; n < N; ++n)
    if (targets[n] >= 0) {
      rows.push_back(n);
      row_targets.push_back(targets[n]);
    }
}

}  // namespace retort::train
