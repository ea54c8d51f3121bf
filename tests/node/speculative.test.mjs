// `retort serve --draft`: the official `openai` package against two real servers on the tiny
// fixture, one with the model drafting for itself (every proposal is kept); greedy replies are the
// same, streamed or not, and /metrics shows the proposals and their acceptance.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { fixtureModel, startServer } from "./server.mjs";

const model = fixtureModel();
const skip = model === null ? "fixture tiny-r1-qwen not found (keep ../shared beside the checkout)" : false;
let plain;
let drafted;

before(async () => {
  if (skip) return;
  const common = ["--template", "chatml", "--ctx", "512"];
  plain = await startServer(model, common);
  drafted = await startServer(model, [...common, "--draft", model, "--draft-tokens", "3"]);
});

after(async () => {
  if (plain) await plain.stop("SIGTERM");
  if (drafted) await drafted.stop("SIGTERM");
});

const client = (server) => new OpenAI({ baseURL: server.url + "/v1", apiKey: "none", maxRetries: 0 });

async function reply(server, content, stream) {
  const request = { model: "tiny-r1-qwen", messages: [{ role: "user", content }], temperature: 0, max_tokens: 24 };
  if (!stream) return (await client(server).chat.completions.create(request)).choices[0].message.content;
  let text = "";
  for await (const chunk of await client(server).chat.completions.create({ ...request, stream: true }))
    text += chunk.choices[0]?.delta?.content ?? "";
  return text;
}

test("greedy replies with a draft equal the model's alone, and /metrics counts the proposals", { skip }, async () => {
  const prompts = ["hello", "what is my balance", "card arrival"];
  const alone = await Promise.all(prompts.map((p) => reply(plain, p, false)));
  const withDraft = await Promise.all(prompts.map((p, i) => reply(drafted, p, i % 2 === 1)));
  assert.deepEqual(withDraft, alone);
  const metrics = await (await fetch(drafted.url + "/metrics")).text();
  const value = (name) => Number(metrics.match(new RegExp(`^${name} (\\S+)$`, "m"))?.[1]);
  assert.ok(value("retort_speculative_proposed_tokens_total") > 0, metrics);
  assert.equal(value("retort_speculative_accepted_tokens_total"), value("retort_speculative_proposed_tokens_total"));
  assert.equal(value("retort_speculative_acceptance_ratio"), 1);
  assert.ok(value("retort_speculative_tokens_per_forward") > 1);
});
