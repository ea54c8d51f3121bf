// Several models under a memory budget (`retort serve --max-memory`), through the official `openai`
// package: tiny-r1-qwen and tiny-r1-llama with a budget that holds only one of them. Models load on
// first use; alternating requests unload one and load the other and still give the greedy replies
// of each model served alone; the estimate /v1/models reports matches the server's real RSS within
// 10 %, and an unload gives the memory back; simultaneous requests for an unloaded model load it
// once; a model streaming a reply is not unloaded under it (the other model's request waits).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import OpenAI from "openai";
import { fixtureModel, startServer } from "./server.mjs";

const qwen = fixtureModel("tiny-r1-qwen");
const llama = fixtureModel("tiny-r1-llama");
const skip = qwen === null || llama === null ? "fixtures tiny-r1-qwen/llama not found (keep ../shared beside the checkout)" : false;
// A large KV pool (96 MiB per model, committed at load under a budget) makes each model's memory
// big enough beside the process's own few MiB that 10 % is a real test of the estimate.
const common = ["--template", "chatml", "--ctx", "1024", "--kv-tokens", "262144", "--batch-tokens", "64",
                "--access-log", ""];
const budget = 150 * 1024 * 1024;  // one model (~98 MiB) fits, two do not
let budgeted;
let qwenAlone;
let llamaAlone;

// In an AddressSanitizer build (scripts/sanitize.sh) freed memory waits in ASan's quarantine (256 MiB by
// default) before it is reused or returned, which an unload's RSS would read as memory not given back:
// the budgeted server runs without quarantine. A release build ignores the variable.
const noQuarantine = { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS ?? ""}:quarantine_size_mb=0:thread_local_quarantine_size_kb=0` };

before(async () => {
  if (skip) return;
  [budgeted, qwenAlone, llamaAlone] = await Promise.all([
    startServer(null, ["--model", `qwen=${qwen}`, "--model", `llama=${llama}`, "--max-memory", "150MiB", ...common],
                noQuarantine),
    startServer(qwen, common),
    startServer(llama, common),
  ]);
});

after(async () => {
  for (const server of [budgeted, qwenAlone, llamaAlone]) if (server) await server.stop("SIGTERM");
});

const client = (server) => new OpenAI({ baseURL: server.url + "/v1", apiKey: "none", maxRetries: 0 });

async function reply(server, model, content, maxTokens = 24) {
  const request = { model, messages: [{ role: "user", content }], temperature: 0, max_tokens: maxTokens };
  const message = (await client(server).chat.completions.create(request)).choices[0].message;
  return (message.reasoning_content ?? "") + "|" + (message.content ?? "");
}

async function metrics(server) {
  const text = await (await fetch(server.url + "/metrics")).text();
  return (name, model) => {
    const match = text.match(new RegExp(`^${name}\\{model="${model}"\\} (\\S+)$`, "m"));
    assert.ok(match, `${name}{model="${model}"} missing:\n${text}`);
    return Number(match[1]);
  };
}

const residentBytes = (server) => {
  const status = readFileSync(`/proc/${server.pid}/status`, "utf8");
  return Number(status.match(/^VmRSS:\s+(\d+) kB$/m)[1]) * 1024;
};

async function listed(server) {
  return Object.fromEntries((await client(server).models.list()).data.map((m) => [m.id, m]));
}

// AddressSanitizer's shadow memory and allocator add their own share to RSS (12 % here): the 10 %
// comparison then says nothing about the estimate and is left out, the memory given back is still checked.
const sanitized = (server) => readFileSync(`/proc/${server.pid}/maps`, "utf8").includes("libasan");

test("models load on first use; the estimate matches the real memory and an unload returns it", { skip }, async (t) => {
  const models = await listed(budgeted);
  assert.deepEqual(Object.keys(models), ["qwen", "llama"]);
  assert.equal(models.qwen.loaded, false);
  assert.equal(models.llama.loaded, false);
  assert.equal(models.qwen.context_length, 1024);
  assert.ok(Math.max(models.qwen.memory_bytes, models.llama.memory_bytes) <= budget);
  assert.ok(models.qwen.memory_bytes + models.llama.memory_bytes > budget, "the budget should hold one model only");

  const before = residentBytes(budgeted);
  await reply(budgeted, "qwen", "hello");
  const withQwen = residentBytes(budgeted) - before;
  const estimateQwen = models.qwen.memory_bytes;
  console.log(`qwen: estimated ${estimateQwen} bytes, RSS grew by ${withQwen}`);
  const exact = !sanitized(budgeted);
  if (!exact) t.diagnostic("AddressSanitizer build: RSS is not compared with the estimate within 10 %");
  if (exact) assert.ok(Math.abs(withQwen - estimateQwen) <= 0.1 * estimateQwen, `qwen: RSS +${withQwen}, estimate ${estimateQwen}`);

  await reply(budgeted, "llama", "hello");
  const withLlama = residentBytes(budgeted) - before;
  const estimateLlama = models.llama.memory_bytes;
  console.log(`after switching to llama: estimated ${estimateLlama} bytes, RSS above the start ${withLlama}`);
  if (exact) {
    assert.ok(Math.abs(withLlama - estimateLlama) <= 0.1 * estimateLlama,
              `llama: RSS +${withLlama} over the start, estimate ${estimateLlama} (was qwen's memory given back?)`);
  }
  assert.ok(withLlama < estimateQwen + estimateLlama / 2, `qwen's memory was not given back: RSS +${withLlama}`);
  const now = await listed(budgeted);
  assert.equal(now.qwen.loaded, false);
  assert.equal(now.llama.loaded, true);
});

test("alternating requests give each model's greedy replies served alone, loading and unloading", { skip }, async () => {
  const prompts = ["hello", "what is my balance", "card arrival"];
  const start = await metrics(budgeted);
  const loadsBefore = { qwen: start("retort_model_loads_total", "qwen"), llama: start("retort_model_loads_total", "llama") };
  for (const p of prompts) {
    assert.equal(await reply(budgeted, "qwen", p), await reply(qwenAlone, "tiny-r1-qwen", p), `qwen: ${p}`);
    assert.equal(await reply(budgeted, "llama", p), await reply(llamaAlone, "tiny-r1-llama", p), `llama: ${p}`);
  }
  assert.notEqual(await reply(qwenAlone, "tiny-r1-qwen", "hello"), await reply(llamaAlone, "tiny-r1-llama", "hello"));
  const value = await metrics(budgeted);
  for (const name of ["qwen", "llama"]) {
    assert.equal(value("retort_model_loads_total", name) - loadsBefore[name], 3, `${name} loads`);
    assert.ok(value("retort_model_unloads_total", name) >= 2, `${name} unloads`);
    assert.ok(value("retort_model_load_seconds_total", name) > 0);
    assert.ok(value("retort_generated_tokens_total", name) > 0, "counters carry across unloads");
  }
  assert.equal(value("retort_model_loaded", "llama"), 1);
  assert.equal(value("retort_model_loaded", "qwen"), 0);
});

test("simultaneous requests for an unloaded model load it once", { skip }, async () => {
  const before = (await metrics(budgeted))("retort_model_loads_total", "qwen");
  assert.equal((await listed(budgeted)).qwen.loaded, false);
  const replies = await Promise.all([1, 2, 3, 4].map(() => reply(budgeted, "qwen", "hello")));
  assert.ok(replies.every((text) => text === replies[0]));
  assert.equal((await metrics(budgeted))("retort_model_loads_total", "qwen"), before + 1);
});

test("a model streaming a reply is not unloaded: the other model's request waits for it", { skip }, async () => {
  const request = { model: "qwen", messages: [{ role: "user", content: "story" }], temperature: 0,
                    max_tokens: 800 };
  const alone = await client(qwenAlone).chat.completions.create({ ...request, model: "tiny-r1-qwen" });
  const expected = (alone.choices[0].message.reasoning_content ?? "") + (alone.choices[0].message.content ?? "");

  const stream = await client(budgeted).chat.completions.create({ ...request, stream: true });
  let streamed = "";
  let otherSent = null;
  let other = null;
  for await (const chunk of stream) {
    streamed += (chunk.choices[0]?.delta?.reasoning_content ?? "") + (chunk.choices[0]?.delta?.content ?? "");
    if (other === null) {
      otherSent = Date.now();
      other = reply(budgeted, "llama", "hello").then((text) => ({ text, at: Date.now() }));
    }
  }
  const streamEnded = Date.now();
  const { text, at } = await other;
  console.log(`qwen streamed ${streamed.length} characters for ${streamEnded - otherSent} ms after llama was asked for; ` +
              `llama answered ${at - streamEnded} ms after the stream ended`);
  assert.equal(streamed, expected, "the stream was cut or changed");
  assert.ok(streamEnded > otherSent, "the llama request was sent while qwen streamed");
  assert.ok(at >= streamEnded, "llama answered before qwen's stream ended, so qwen was unloaded under it");
  assert.equal(text, await reply(llamaAlone, "tiny-r1-llama", "hello"));
});

test("a model larger than the budget is refused at start, also from a config's max-memory:", { skip }, async () => {
  await assert.rejects(startServer(null, ["--model", `qwen=${qwen}`, "--max-memory", "1MiB", ...common]),
                       /model 'qwen' needs [\d.]+ MiB \(\d+ bytes: weights and KV cache\) but --max-memory is 1\.0 MiB/);
  await assert.rejects(startServer(null, ["--model", `qwen=${qwen}`, "--max-memory", "6GB"]), /--max-memory expects a size/);
  const dir = mkdtempSync(path.join(os.tmpdir(), "retort-budget-"));
  try {
    const config = path.join(dir, "serve.yaml");
    writeFileSync(config, ["models:", `  - {name: first, path: ${qwen}}`, "max-memory: 2MiB", ""].join("\n"));
    await assert.rejects(startServer("--config", [config]), /but --max-memory is 2\.0 MiB/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
