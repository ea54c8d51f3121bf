#include "train/student_init.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "io/safetensors.h"
#include "train/parameters.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"

namespace retort::train {

namespace fs = std::filesystem;

std::vector<int64_t> student_layer_selection(const StudentInit& init, int64_t teacher_layers) {
  std::vector<int64_t> layers = init.layers;
  if (init.every > 0)
    for (int64_t l = 0; l < teacher_layers; l += init.every) layers.push_back(l);
  require(!layers.empty(), ErrorKind::InvalidInput, "student.layers: the student needs at least one teacher layer");
  for (size_t i = 0; i < layers.size(); ++i) {
    require(layers[i] >= 0 && layers[i] < teacher_layers, ErrorKind::OutOfRange,
            "student.layers: teacher layer {} does not exist; the teacher has layers 0..{}", layers[i],
            teacher_layers - 1);
    require(i == 0 || layers[i] > layers[i - 1], ErrorKind::InvalidInput,
            "student.layers must be increasing (the student keeps the teacher's order), got {} after {}", layers[i],
            layers[i - 1]);
  }
  return layers;
}

std::vector<int64_t> strongest_mlp_units(const float* w_gate, const float* w_up, const float* w_down, int64_t F,
                                         int64_t C, int64_t keep) {
  std::vector<double> strength(static_cast<size_t>(F));
  for (int64_t u = 0; u < F; ++u) {
    double g = 0, p = 0, d = 0;
    for (int64_t c = 0; c < C; ++c) {
      g += double(w_gate[u * C + c]) * w_gate[u * C + c];
      p += double(w_up[u * C + c]) * w_up[u * C + c];
      d += double(w_down[c * F + u]) * w_down[c * F + u];  // down_proj is [C, F]: unit u is a column
    }
    strength[size_t(u)] = std::sqrt(g * p * d);
  }
  std::vector<int64_t> order(static_cast<size_t>(F));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return strength[size_t(a)] > strength[size_t(b)]; });
  order.resize(static_cast<size_t>(keep));
  std::sort(order.begin(), order.end());
  return order;
}

void write_student_from_teacher(const std::string& teacher_dir, const StudentInit& init, const std::string& out_dir) {
  const ModelConfig teacher = load_hf_config((fs::path(teacher_dir) / "config.json").string());
  const std::vector<int64_t> keep_layers = student_layer_selection(init, teacher.num_layers);
  const int64_t C = teacher.hidden_size, F = teacher.intermediate_size;
  const int64_t Fs = init.intermediate_size > 0 ? init.intermediate_size : F;
  require(Fs <= F, ErrorKind::InvalidInput,
          "student.intermediate_size {} is larger than the teacher's {}: a student can only shrink the MLP", Fs, F);

  ModelConfig student = teacher;
  student.num_layers = static_cast<int>(keep_layers.size());
  student.intermediate_size = Fs;
  const ParameterLayout tl = parameter_layout(teacher), sl = parameter_layout(student);
  std::vector<float> tp(tl.total), sp(sl.total);
  load_parameters(tl, *Checkpoint::open_directory(teacher_dir), tp.data());

  for (const ParameterInfo& s : sl.tensors) {
    const int64_t from_layer = s.layer < 0 ? -1 : keep_layers[size_t(s.layer)];
    const ParameterInfo& t = tl.find(s.role, static_cast<int>(from_layer));
    float* dst = sp.data() + s.offset;
    const float* src = tp.data() + t.offset;
    if (Fs == F || (s.role != TensorRole::WGate && s.role != TensorRole::WUp && s.role != TensorRole::WDown)) {
      std::copy(src, src + s.count, dst);
      continue;
    }
    const float* gate = tp.data() + tl.find(TensorRole::WGate, static_cast<int>(from_layer)).offset;
    const float* up = tp.data() + tl.find(TensorRole::WUp, static_cast<int>(from_layer)).offset;
    const float* down = tp.data() + tl.find(TensorRole::WDown, static_cast<int>(from_layer)).offset;
    const std::vector<int64_t> units = strongest_mlp_units(gate, up, down, F, C, Fs);
    for (int64_t j = 0; j < Fs; ++j) {
      const int64_t u = units[size_t(j)];
      if (s.role == TensorRole::WDown)
        for (int64_t c = 0; c < C; ++c) dst[c * Fs + j] = src[c * F + u];
      else
        std::copy(src + u * C, src + (u + 1) * C, dst + j * C);
    }
  }

  const fs::path temp = fs::path(out_dir).string() + ".tmp";
  fs::remove_all(temp);
  fs::create_directories(temp);
  student.torch_dtype = "float32";
  write_file_atomically((temp / "config.json").string(), to_hf_config(student).dump(2) + "\n");
  write_safetensors_checkpoint(temp.string(), parameter_tensors(sl, sp.data()), uint64_t(1) << 40);
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"})
    if (fs::exists(fs::path(teacher_dir) / name)) fs::copy_file(fs::path(teacher_dir) / name, temp / name);
  fs::remove_all(out_dir);
  fs::rename(temp, out_dir);
  spdlog::info("student initialised from the teacher: layers [{}] of {}, MLP {} of {} units -> {}",
               fmt::join(keep_layers, ", "), teacher.num_layers, Fs, F, out_dir);
}

}  // namespace retort::train
