#pragma once
// Each subcommand lives in its own cmd_<name>.cpp and registers itself on the root app here.
// A subcommand's callback throws retort::Error for anything the user got wrong; main() turns
// that into one line on stderr and exit code 1. A callback that wants another exit code sets it.
#include <CLI/CLI.hpp>

namespace retort::cli {

void set_exit_code(int code);

void add_doctor_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_init_command(CLI::App& app);
void add_convert_command(CLI::App& app);  // convert and quantize
void add_eval_command(CLI::App& app);
void add_bleu_command(CLI::App& eval);  // eval bleu (cmd_eval_text.cpp), from add_eval_command
void add_train_command(CLI::App& app);
void add_distill_command(CLI::App& app);
void add_pipeline_command(CLI::App& app);
void add_classify_command(CLI::App& app);  // under eval: call after add_eval_command
void add_serve_command(CLI::App& app);
void add_bench_command(CLI::App& app);  // bench MODEL... and bench serve --url
void add_tune_command(CLI::App& app);   // tune distill (cmd_tune.cpp)
void add_tune_serve_command(CLI::App& tune);  // tune serve (cmd_tune_serve.cpp), from add_tune_command

}  // namespace retort::cli
