// The chat page at GET / in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): type a message, see the reply stream in, with the reasoning in its own block.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { fixtureModel, startServer, metricValue } from "./server.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const model = fixtureModel();
let skip = false;
if (model === null) skip = "fixture tiny-r1-qwen not found";
else if (!existsSync(CHROMIUM)) {
  if (process.env.CI === "true") throw new Error(`${CHROMIUM} is missing (CI=true); scripts/setup.sh installs it`);
  skip = `${CHROMIUM} not found; scripts/setup.sh installs Debian's chromium`;
}
let server, context, profile;

before(async () => {
  if (skip) return;
  server = await startServer(model, ["--template", "deepseek-r1", "--ctx", "4096", "--access-log", ""]);
  profile = mkdtempSync(path.join(os.tmpdir(), "retort-chromium-"));
  // A fresh profile each run (playwright passes it to chromium as --user-data-dir).
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  if (context) await context.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (server) await server.stop();
});

test("type a message and watch the reply stream in", { skip, timeout: 60000 }, async () => {
  const page = await context.newPage();
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(server.url)) external.push(r.url()); });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(server.url + "/");
  await page.waitForFunction(() => document.getElementById("model").textContent.length > 0);
  await page.fill("#max_tokens", "48");
  await page.fill("#temperature", "0");
  await page.fill("#input", "Hello, who are you?");
  await page.keyboard.press("Enter");
  await page.waitForSelector(".msg.user");
  // While streaming, the stop button is enabled and text keeps growing.
  const reasoning = page.locator(".msg.assistant details.reasoning span");
  await page.waitForFunction(() => {
    const box = document.querySelector(".msg.assistant");
    return box && box.textContent.length > 0;
  });
  await page.waitForFunction(() => !document.getElementById("send").disabled, null, { timeout: 30000 });
  const text = await reasoning.textContent();
  assert.ok(text.length > 0, "the reasoning block received streamed text");
  assert.equal(await page.locator(".msg.assistant details.reasoning").isHidden(), false);
  assert.match(await page.locator("#status").textContent(), /tokens in|done/);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(external, [], "the page loads nothing from outside the server");
});

test("the stop button ends a long reply and the server drops the sequence", { skip, timeout: 60000 }, async () => {
  const page = await context.newPage();
  await page.goto(server.url + "/");
  await page.waitForFunction(() => document.getElementById("model").textContent.length > 0);
  // Greedy, the tiny model's reply to this prompt runs into the token budget without an end token:
  // 4000 tokens, ~9 s on one thread (its reply to "Write a long essay" ended after 758 tokens in half a
  // second, which a browser on a loaded machine did not always stop in time).
  await page.fill("#max_tokens", "4000");
  await page.fill("#temperature", "0");
  await page.fill("#input", "Tell me everything");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelector(".msg.assistant")?.textContent.length > 0);
  await page.click("#stop");
  await page.waitForFunction(() => document.getElementById("status").textContent === "stopped");
  assert.equal(await page.locator("#send").isDisabled(), false);
  // The server saw the client go away (status 499) and holds no sequence afterwards.
  let metrics = "";
  for (let i = 0; i < 100; i++) {
    metrics = await (await fetch(server.url + "/metrics")).text();
    if (/status="499"\} 1/.test(metrics) && metricValue(metrics, "retort_running_sequences") === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(metrics, /retort_requests_total\{endpoint="\/v1\/chat\/completions",status="499"\} 1/);
  assert.equal(metricValue(metrics, "retort_running_sequences"), 0);
  assert.equal(metricValue(metrics, "retort_kv_cache_blocks_used"), 0);
});
