#pragma once
// Student initialisation from the teacher: keep a subset of the teacher's layers (e.g. every other
// one, as DistilBERT does) and optionally shrink each kept MLP to its strongest units, and write
// the result as a Hugging Face directory the trainer starts from.
#include <cstdint>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "train/distill_config.h"

namespace retort::train {

// The teacher layers the student keeps, checked against the teacher's layer count.
std::vector<int64_t> student_layer_selection(const StudentInit& init, int64_t teacher_layers);

// Which `keep` of a layer's F intermediate units to keep: the largest ‖gate_u‖·‖up_u‖·‖down_u‖,
// in their original order.
std::vector<int64_t> strongest_mlp_units(const float* w_gate, const float* w_up, const float* w_down, int64_t F,
                                         int64_t C, int64_t keep);

// Writes out_dir (config.json, model.safetensors in f32, tokenizer files) atomically.
void write_student_from_teacher(const std::string& teacher_dir, const StudentInit& init, const std::string& out_dir);

}  // namespace retort::train
