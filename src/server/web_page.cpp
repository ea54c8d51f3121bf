#include "server/web_page.h"

namespace retort::server {

namespace {

// Kept as one raw string so the binary carries the page; text from the model is only ever put in
// with textContent, never innerHTML.
constexpr std::string_view kChatPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>retort chat</title>
<style>
  :root { color-scheme: light dark; --accent: #2f6fdf; --muted: #888; }
  body { font-family: system-ui, sans-serif; margin: 0; display: flex; height: 100vh; }
  aside { width: 16rem; padding: 1rem; border-right: 1px solid #8884; overflow-y: auto; }
  aside label { display: block; font-size: .85rem; margin-top: .7rem; color: var(--muted); }
  aside input, aside textarea { width: 100%; box-sizing: border-box; }
  main { flex: 1; display: flex; flex-direction: column; min-width: 0; }
  #log { flex: 1; overflow-y: auto; padding: 1rem; }
  .msg { margin: .6rem 0; padding: .6rem .8rem; border-radius: .5rem; white-space: pre-wrap; word-wrap: break-word; }
  .user { background: #2f6fdf22; }
  .assistant { background: #8881; }
  .error { background: #d3333333; }
  details.reasoning { color: var(--muted); font-size: .9rem; margin-bottom: .4rem; white-space: pre-wrap; }
  form { display: flex; gap: .5rem; padding: .8rem; border-top: 1px solid #8884; }
  #input { flex: 1; resize: vertical; min-height: 2.5rem; font: inherit; }
  button { font: inherit; padding: .4rem 1rem; }
  #status { font-size: .8rem; color: var(--muted); padding: 0 1rem .4rem; }
</style>
</head>
<body>
<aside>
  <strong>retort</strong> <span id="model"></span>
  <label>System prompt <textarea id="system" rows="3"></textarea></label>
  <label>Temperature <input id="temperature" type="number" step="0.05" min="0" max="2" value="0.6"></label>
  <label>Top-p <input id="top_p" type="number" step="0.05" min="0.01" max="1" value="0.95"></label>
  <label>Max tokens <input id="max_tokens" type="number" min="1" value="512"></label>
  <label>API key <input id="api_key" type="password" autocomplete="off"></label>
  <p><button id="clear" type="button">New chat</button></p>
</aside>
<main>
  <div id="log" aria-live="polite"></div>
  <div id="status"></div>
  <form id="form">
    <textarea id="input" placeholder="Type a message (Enter sends, Shift+Enter for a new line)"></textarea>
    <button id="send" type="submit">Send</button>
    <button id="stop" type="button" disabled>Stop</button>
  </form>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const turns = [];
let controller = null;
let modelName = "";

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api_key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const body = await r.json();
    if (r.ok && body.data && body.data.length) { modelName = body.data[0].id; $("model").textContent = modelName; }
    else $("status").textContent = (body.error && body.error.message) || "cannot list models";
  } catch (e) { $("status").textContent = String(e); }
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  if (text) div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

// Reads "data: {...}" lines from the SSE body and calls onChunk with each parsed chunk.
async function readEvents(response, onChunk) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onChunk(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  turns.push({ role: "user", content: text });
  addMessage("user", text);
  const box = addMessage("assistant", "");
  const details = document.createElement("details");
  details.className = "reasoning";
  const summary = document.createElement("summary");
  summary.textContent = "Reasoning";
  const reasoning = document.createElement("span");
  details.append(summary, reasoning);
  const answer = document.createElement("span");
  answer.className = "answer";
  box.append(details, answer);
  details.hidden = true;

  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...turns);
  const body = {
    model: modelName || undefined, messages, stream: true,
    temperature: Number($("temperature").value), top_p: Number($("top_p").value),
    max_tokens: Number($("max_tokens").value), stream_options: { include_usage: true },
  };
  controller = new AbortController();
  $("send").disabled = true; $("stop").disabled = false;
  $("status").textContent = "generating…";
  const started = performance.now();
  let tokens = 0;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!response.ok) {
      const err = await response.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || ("HTTP " + response.status));
    }
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) return;
      const delta = choice.delta || {};
      if (delta.reasoning_content) { details.hidden = false; reasoning.textContent += delta.reasoning_content; }
      if (delta.content) answer.textContent += delta.content;
      $("log").scrollTop = $("log").scrollHeight;
    });
    const seconds = (performance.now() - started) / 1000;
    $("status").textContent = tokens ? `${tokens} tokens in ${seconds.toFixed(1)} s` : "done";
  } catch (e) {
    if (e.name === "AbortError") $("status").textContent = "stopped";
    else { box.classList.add("error"); answer.textContent += "\n[" + e.message + "]"; $("status").textContent = "error"; }
  } finally {
    turns.push({ role: "assistant", content: answer.textContent });
    controller = null;
    $("send").disabled = false; $("stop").disabled = true;
  }
}

$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("form").requestSubmit(); }
});
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
$("clear").addEventListener("click", () => { turns.length = 0; $("log").textContent = ""; $("status").textContent = ""; });
$("api_key").addEventListener("change", loadModel);
loadModel();
</script>
</body>
</html>
)HTML";

}  // namespace

std::string_view chat_page_html() { return kChatPage; }

}  // namespace retort::server
