#pragma once
// Plain f64 statements of what each kernel computes: the truth the SIMD kernels are tested against.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "tensor/dtype.h"

namespace retort::test {

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> values(n);
  for (auto& v : values) v = dist(rng);
  return values;
}

// Weights stored as `dtype` bytes, plus the exact f64 values they represent.
struct StoredWeights {
  std::vector<uint8_t> bytes;
  std::vector<double> exact;
};

inline StoredWeights store_weights(const std::vector<float>& values, DType dtype) {
  StoredWeights w;
  w.bytes.resize(values.size() * dtype_size(dtype));
  w.exact.resize(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::F32) {
      reinterpret_cast<float*>(w.bytes.data())[i] = values[i];
      w.exact[i] = values[i];
    } else {
      uint16_t bits = dtype == DType::BF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
      reinterpret_cast<uint16_t*>(w.bytes.data())[i] = bits;
      w.exact[i] = dtype == DType::BF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
    }
  }
  return w;
}

inline std::vector<double> reference_matmul(const std::vector<float>& in, const std::vector<double>& w, int64_t tokens,
                                            int64_t rows, int64_t cols) {
  std::vector<double> out(static_cast<size_t>(tokens * rows));
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0;
      for (int64_t k = 0; k < cols; ++k) sum += static_cast<double>(in[t * cols + k]) * w[r * cols + k];
      out[t * rows + r] = sum;
    }
  return out;
}

// Bound for an f32 dot product of length n against f64: grows like sqrt(n) for random data; the
// factor leaves room for the worst case of SIMD summation order.
inline double dot_tolerance(int64_t n, double magnitude) { return 1e-6 * magnitude * (4.0 + n) ; }

}  // namespace retort::test
