// The LoRA list: every LoRA of the org (loaded once, then kept current from lora.* events), filtered
// by text and status and shown a page at a time.

import { listAll } from "../api.js";
import { age, el, errorBox, field, page, replace, statusBadge, table, timeElement } from "../dom.js";
import { feed } from "../events.js";
import { applyLoraEvent, latestByModel, mergeListing } from "../loras_model.js";

const PAGE_SIZE = 20;
const STATUSES = ["", "pending_validation", "ready", "failed"];

export async function renderLoraList() {
  const state = { loras: [], page: 0, text: "", status: "" };
  const results = el("div", { "aria-live": "polite" }, el("p", {}, "Loading…"));
  const count = el("p", { class: "hint", role: "status" });
  const search = el("input", { type: "search", placeholder: "name, display name or description" });
  const status = el("select", {}, STATUSES.map((s) => el("option", { value: s }, s || "any")));
  search.addEventListener("input", () => { state.text = search.value.trim().toLowerCase(); state.page = 0; draw(); });
  status.addEventListener("change", () => { state.status = status.value; state.page = 0; draw(); });
  page("LoRAs",
    el("div", { class: "toolbar" },
      el("div", { class: "filters", role: "search" }, field("Filter", search), field("Status", status)),
      el("a", { class: "button", href: "#/upload" }, "Upload a LoRA")),
    count, results);

  function draw() {
    const shown = state.loras.filter((lora) => matches(lora, state));
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    const slice = shown.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
    count.textContent = `${shown.length} of ${state.loras.length} LoRAs`;
    if (!state.loras.length) {
      replace(results, el("p", {}, "No LoRAs yet. ", el("a", { href: "#/upload" }, "Upload one"), "."));
      return;
    }
    replace(results, table("Your LoRAs", ["Name", "Status", "Models", "Created"], slice.map(row)),
      pager(state, pages, draw));
  }

  async function load() {
    try {
      state.loras = mergeListing(state.loras, await listAll("/loras", { order: "desc" }));
      draw();
    } catch (error) {
      replace(results, errorBox(error));
    }
  }

  const unsubscribe = feed.subscribe((event) => {
    if (event.type.startsWith("stream.")) load();
    else if (event.type.startsWith("lora.")) {
      state.loras = applyLoraEvent(state.loras, event);
      draw();
    }
  });
  await load();
  return unsubscribe;
}

function matches(lora, { text, status }) {
  if (status && lora.status !== status) return false;
  if (!text) return true;
  return [lora.name, lora.display_name, lora.description].some((value) => (value || "").toLowerCase().includes(text));
}

function row(lora) {
  const latest = latestByModel(lora);
  return el("tr", { "data-lora": lora.name },
    el("td", {}, el("a", { href: `#/loras/${encodeURIComponent(lora.name)}` }, lora.name),
      lora.display_name ? el("div", { class: "hint" }, lora.display_name) : null),
    el("td", {}, statusBadge(lora.status)),
    el("td", {}, el("ul", { class: "plain" }, lora.supported_models.map((model) =>
      el("li", {}, model, " ", statusBadge(latest.get(model)?.status ?? "none"))))),
    el("td", {}, timeElement(lora.created_at, age(lora.created_at))));
}

function pager(state, pages, draw) {
  if (pages <= 1) return null;
  const go = (delta) => () => { state.page += delta; draw(); };
  return el("nav", { class: "pager", "aria-label": "Pages" },
    el("button", { type: "button", class: "secondary", disabled: state.page === 0, onclick: go(-1) }, "Previous"),
    el("span", {}, `Page ${state.page + 1} of ${pages}`),
    el("button", { type: "button", class: "secondary", disabled: state.page >= pages - 1, onclick: go(1) }, "Next"));
}
