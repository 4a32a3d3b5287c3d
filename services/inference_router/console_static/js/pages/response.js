// One stored Response (a validation record's links here): its status, output text and the whole object.

import { api } from "../api.js";
import { el, errorBox, page, replace, statusBadge, timeElement } from "../dom.js";

export async function renderResponse(id) {
  const body = el("div", {}, el("p", {}, "Loading…"));
  page(`Response ${id}`, body);
  try {
    const response = await api(`/responses/${encodeURIComponent(id)}`);
    const text = (response.output || []).flatMap((item) => item.content || [])
      .filter((part) => typeof part.text === "string").map((part) => part.text).join("");
    replace(body,
      el("dl", { class: "facts card" },
        el("dt", {}, "Status"), el("dd", {}, statusBadge(response.status)),
        el("dt", {}, "Model"), el("dd", {}, response.model ?? "–"),
        el("dt", {}, "Created"), el("dd", {}, timeElement(response.created_at)),
        response.error ? [el("dt", {}, "Error"), el("dd", {}, `${response.error.code ?? ""} ${response.error.message ?? ""}`)] : null,
        response.usage ? [el("dt", {}, "Tokens"), el("dd", {}, `${response.usage.input_tokens} in, ${response.usage.output_tokens} out`)] : null),
      el("h2", {}, "Output"), el("pre", { class: "output", id: "response-output" }, text || "(none)"),
      el("details", {}, el("summary", {}, "The whole Response object"),
        el("pre", { class: "code" }, JSON.stringify(response, null, 2))),
      el("p", {}, el("a", { href: "#/loras" }, "Back to the LoRAs")));
  } catch (error) {
    replace(body, errorBox(error));
  }
}
