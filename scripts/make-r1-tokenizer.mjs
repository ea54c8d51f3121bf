// Assembles the DeepSeek-R1-Distill-Qwen tokenizer (Qwen's vocabulary with DeepSeek's added tokens,
// BOS post-processor, tokenizer_config and chat template) into .cache/tokenizers/r1-distill-qwen/,
// from the npm Qwen tokenizer and the facts in ../shared/data (see its r1-distill-qwen/README.md).
// Usage: node scripts/make-r1-tokenizer.mjs SHARED_DATA_DIR
import fs from "node:fs";
import path from "node:path";

const data = process.argv[2];
const facts = path.join(data, "r1-distill-qwen");
const template = path.join(data, "chat-templates", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
const out = ".cache/tokenizers/r1-distill-qwen";
const tokenizer = JSON.parse(fs.readFileSync(".cache/tokenizers/qwen/tokenizer.json", "utf8"));
tokenizer.added_tokens = JSON.parse(fs.readFileSync(path.join(facts, "added_tokens.json"), "utf8"));
tokenizer.post_processor = JSON.parse(fs.readFileSync(path.join(facts, "post_processor.json"), "utf8"));
const config = {
  add_bos_token: true,
  add_eos_token: false,
  bos_token: "<｜begin▁of▁sentence｜>",
  eos_token: "<｜end▁of▁sentence｜>",
  pad_token: "<｜end▁of▁sentence｜>",
  model_max_length: 16384,
  tokenizer_class: "LlamaTokenizerFast",
  chat_template: fs.readFileSync(template, "utf8"),
};
fs.mkdirSync(out, { recursive: true });
for (const [name, value] of [["tokenizer.json", tokenizer], ["tokenizer_config.json", config]]) {
  const target = path.join(out, name);
  fs.writeFileSync(target + ".tmp", JSON.stringify(value));
  fs.renameSync(target + ".tmp", target);
}
console.log(`DeepSeek-R1-Distill-Qwen tokenizer ready in ${out}`);
