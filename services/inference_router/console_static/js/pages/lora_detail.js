// One LoRA: every validation record per model, live from lora.* events while any is pending or running,
// failures with their result_code and every line of result_message; edit, add a model, delete.

import { api, encodeRef } from "../api.js";
import { el, errorBox, page, replace, statusBadge, timeElement } from "../dom.js";
import { feed } from "../events.js";
import { ACTIVE, isNewer, mergeSnapshot, recordsByModel } from "../loras_model.js";
import { deleteDialog, editForm } from "./lora_edit.js";

export async function renderLoraDetail(ref) {
  const body = el("div", {}, el("p", {}, "Loading…"));
  const root = page(ref, body);
  let lora = null;
  let notice = ""; // kept across the redraws the events cause

  async function load() {
    try {
      lora = mergeSnapshot(lora, await api(`/loras/${encodeRef(ref)}`));
      draw();
    } catch (error) {
      replace(body, errorBox(error), el("p", {}, el("a", { href: "#/loras" }, "Back to the LoRAs")));
    }
  }

  function draw() {
    const heading = root.querySelector("h1");
    heading.textContent = lora.display_name || lora.name;
    replace(body,
      el("p", { class: "notice", role: "status" }, notice),
      summary(lora),
      el("section", { "aria-labelledby": "validations-h" },
        el("h2", { id: "validations-h" }, "Validations"),
        liveNote(lora),
        [...recordsByModel(lora)].map(([model, records]) => modelSection(model, records))),
      editForm(lora, (updated) => {
        lora = mergeSnapshot(lora, updated);
        notice = "Saved.";
        draw();
      }),
      deleteDialog(lora));
  }

  const unsubscribe = feed.subscribe((event) => {
    if (event.type.startsWith("stream.")) {
      load();
      return;
    }
    const changed = event.data?.lora;
    if (!lora || !changed || changed.id !== lora.id || !event.type.startsWith("lora.") || !isNewer(event)) return;
    if (event.type === "lora.deleted") {
      replace(body, el("p", { role: "alert", class: "notice" }, `${lora.name} was deleted.`),
        el("p", {}, el("a", { href: "#/loras" }, "Back to the LoRAs")));
      lora = null;
      return;
    }
    lora = mergeSnapshot(lora, changed); // an event published before our last GET may arrive after it
    draw();
  });
  await load();
  return unsubscribe;
}

function summary(lora) {
  const rows = [
    ["Name", el("code", {}, lora.name)],
    ["Status", el("span", { id: "lora-status" }, statusBadge(lora.status))],
    ["Display name", lora.display_name || "–"],
    ["Description", el("span", { class: "prewrap", id: "lora-description" }, lora.description || "–")],
    ["Models", lora.supported_models.join(", ")],
    ["Id", el("code", {}, lora.id)],
    ["Files", el("span", {}, "config ", el("code", {}, lora.config_file_id), ", weights ",
      el("code", {}, lora.weights_file_id))],
    ["Created", timeElement(lora.created_at)],
    ["Updated", timeElement(lora.updated_at)],
  ];
  return el("section", { class: "card", "aria-label": "Summary" },
    el("dl", { class: "facts" }, rows.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)])),
    el("p", {}, el("a", { class: "button", href: `#/playground?lora=${encodeURIComponent(lora.name)}` },
      "Try it in the playground")));
}

function liveNote(lora) {
  const active = (lora.validations || []).some((record) => ACTIVE.has(record.status));
  return el("p", { class: "hint", role: "status" },
    active ? "Validation in progress: this page updates by itself." : "Every validation has finished.");
}

function modelSection(model, records) {
  const latest = records[records.length - 1];
  return el("section", { class: "card model", "data-model": model },
    el("h3", {}, model, " ", statusBadge(latest ? latest.status : "none")),
    records.length ? el("ol", { class: "records", reversed: true },
      records.slice().reverse().map((record) => recordItem(record, record === latest)))
      : el("p", {}, "No validation record."));
}

function recordItem(record, isLatest) {
  const lines = (record.result_message || "").split("\n").filter((line) => line.trim());
  return el("li", { class: "record", "data-validation": record.id, "data-status": record.status },
    el("div", { class: "record-head" },
      statusBadge(record.status), isLatest ? el("span", { class: "hint" }, " latest") : null,
      record.result_code ? [" ", el("code", { class: "result-code" }, record.result_code)] : null),
    lines.length ? el("ul", { class: "result-message", "aria-label": "Result message" },
      lines.map((line) => el("li", {}, line))) : null,
    el("p", { class: "hint" },
      "Created ", timeElement(record.created_at),
      record.started_at ? [", started ", timeElement(record.started_at)] : null,
      record.finished_at ? [", finished ", timeElement(record.finished_at)] : null, ". ",
      el("a", { href: `#/responses/${encodeURIComponent(record.response_id)}` }, `Response ${record.response_id}`)));
}
