// Playground: stream one chat answer, or the same prompt side by side at temperature 0 with and
// without a LoRA (and with a second LoRA), to see what an adapter changes. Shows the request as code.

import { listAll, models, streamPost } from "../api.js";
import { copyButton, el, errorBox, field, page, replace } from "../dom.js";
import { curlSnippet, pythonSnippet } from "../snippets.js";

export async function renderPlayground() {
  const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("lora");
  const model = el("select", { id: "pg-model" });
  const lora = el("select", { id: "pg-lora" });
  const second = el("select", { id: "pg-lora-2" });
  const prompt = el("textarea", { id: "pg-prompt", rows: "3", required: true });
  const maxTokens = el("input", { id: "pg-max-tokens", type: "number", min: "1", max: "4096", value: "48" });
  const temperature = el("input", { id: "pg-temperature", type: "number", min: "0", max: "2", step: "0.1", value: "0" });
  const compare = el("input", { id: "pg-compare", type: "checkbox" });
  const run = el("button", { type: "submit", id: "pg-run" }, "Run");
  const stop = el("button", { type: "button", class: "secondary", disabled: true }, "Stop");
  const outputs = el("div", { class: "columns", id: "pg-outputs" });
  const code = el("div", { id: "pg-code" });
  const problem = el("div");
  const form = el("form", { class: "card" },
    el("div", { class: "grid" }, field("Model", model), field("LoRA", lora),
      field("Second LoRA (side by side)", second), field("Max tokens", maxTokens),
      field("Temperature", temperature, "Side by side always runs at 0, so differences come from the LoRA.")),
    field("Prompt", prompt),
    el("div", { class: "check" }, compare, el("label", { for: compare.id }, "Side by side: without the LoRA, with it (and with the second)")),
    el("div", { class: "actions" }, run, stop));
  page("Playground", problem, form, outputs, code);

  let loras = [];
  let controller = null;
  try {
    const [modelList, loraList] = await Promise.all([models(), listAll("/loras")]);
    loras = loraList;
    modelList.forEach((m) => model.append(el("option", { value: m.id }, m.id)));
    const preferred = loras.find((l) => l.name === wanted);
    const usable = modelList.find((m) => preferred?.supported_models.includes(m.id)) ||
      modelList.find((m) => m.id.includes("tiny")) || modelList[0];
    if (usable) model.value = usable.id;
    fillLoras(lora, second, loras, model.value, wanted);
  } catch (error) {
    replace(problem, errorBox(error));
  }
  model.addEventListener("change", () => fillLoras(lora, second, loras, model.value, lora.value));
  compare.addEventListener("change", () => { temperature.disabled = compare.checked; });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    controller?.abort();
    controller = new AbortController();
    const base = {
      model: model.value, messages: [{ role: "user", content: prompt.value }],
      temperature: compare.checked ? 0 : Number(temperature.value), max_tokens: Number(maxTokens.value) || 48,
      stream: true,
    };
    const runs = compare.checked ? sideBySide(base, lora.value, second.value) : [single(base, lora.value)];
    showCode(code, runs[runs.length > 1 ? 1 : 0].body);
    replace(outputs, runs.map((r) => r.column.node));
    run.disabled = true;
    stop.disabled = false;
    await Promise.all(runs.map((r) => r.column.stream(r.body, controller.signal)));
    run.disabled = false;
    stop.disabled = true;
  });
  stop.addEventListener("click", () => controller?.abort());
  return () => controller?.abort();
}

function fillLoras(lora, second, loras, modelId, keep) {
  const usable = loras.filter((l) => l.supported_models.includes(modelId) && l.status !== "failed");
  for (const select of [lora, second]) {
    const previous = select === lora ? keep : select.value;
    replace(select, el("option", { value: "" }, "(none)"),
      usable.map((l) => el("option", { value: l.name }, l.display_name ? `${l.name} · ${l.display_name}` : l.name)));
    if (usable.some((l) => l.name === previous)) select.value = previous;
  }
}

function withLora(base, name) {
  return name ? { ...base, metadata: { lora: name } } : base;
}

function single(base, name) {
  return { body: withLora(base, name), column: column(name ? `With ${name}` : "Base model", "single") };
}

function sideBySide(base, first, second) {
  const runs = [{ body: base, column: column("Without a LoRA", "base") }];
  if (first) runs.push({ body: withLora(base, first), column: column(`With ${first}`, "lora") });
  if (second && second !== first) runs.push({ body: withLora(base, second), column: column(`With ${second}`, "lora-2") });
  return runs;
}

function column(title, key) {
  const output = el("pre", { class: "output", "data-output": key, "aria-busy": "true" });
  const status = el("p", { class: "hint", role: "status" }, "Waiting for the first token…");
  const node = el("section", { class: "card column", "aria-label": title }, el("h2", {}, title), output, status);
  return {
    node,
    async stream(body, signal) {
      try {
        await streamPost("/chat/completions", body, (frame) => {
          if (frame.data === "[DONE]") return;
          const chunk = JSON.parse(frame.data);
          if (chunk.error) throw Object.assign(new Error(chunk.error.message), chunk.error);
          const text = chunk.choices?.[0]?.delta?.content;
          if (text) output.append(text);
          const reason = chunk.choices?.[0]?.finish_reason;
          if (reason) status.textContent = `Finished (${reason}).`;
          else if (text) status.textContent = "Streaming…";
        }, signal);
        if (!status.textContent.startsWith("Finished")) status.textContent = "Finished.";
      } catch (error) {
        if (error.name === "AbortError") status.textContent = "Stopped.";
        else replace(status, errorBox(error));
      } finally {
        output.setAttribute("aria-busy", "false");
        node.dataset.done = "true";
      }
    },
  };
}

function showCode(node, body) {
  const origin = location.origin;
  const curl = curlSnippet(origin, body);
  const python = pythonSnippet(origin, body);
  replace(node, el("section", { class: "card", "aria-labelledby": "code-h" },
    el("h2", { id: "code-h" }, "This request as code"),
    el("h3", {}, "curl ", copyButton("Copy", () => curl)), el("pre", { class: "code", id: "pg-curl" }, curl),
    el("h3", {}, "Python (openai SDK) ", copyButton("Copy", () => python)), el("pre", { class: "code", id: "pg-python" }, python)));
}
