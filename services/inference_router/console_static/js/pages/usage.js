// Usage: the org's tokens and requests per time bucket from GET /v1/organization/usage/completions,
// grouped by model, LoRA or API key. Loaded when asked (no polling: every call counts against the
// management rate limit).

import { api, listAll, query } from "../api.js";
import { el, errorBox, field, page, replace, table } from "../dom.js";

const RANGES = {
  "24h": { seconds: 86400, bucket: "1h", limit: 24, label: "Last 24 hours, by hour" },
  "7d": { seconds: 7 * 86400, bucket: "1d", limit: 7, label: "Last 7 days, by day" },
  "30d": { seconds: 30 * 86400, bucket: "1d", limit: 31, label: "Last 30 days, by day" },
};
const GROUPS = { "": "nothing", model: "model", lora_id: "LoRA", api_key_id: "API key" };

export async function renderUsage() {
  const range = el("select", { id: "usage-range" }, Object.entries(RANGES).map(([v, r]) => el("option", { value: v }, r.label)));
  const group = el("select", { id: "usage-group" }, Object.entries(GROUPS).map(([v, l]) => el("option", { value: v }, l)));
  const refresh = el("button", { type: "submit" }, "Show");
  const results = el("div", { id: "usage-results", "aria-live": "polite" });
  const form = el("form", { class: "card toolbar" }, field("Period", range), field("Group by", group), refresh);
  page("Usage", el("p", { class: "hint" }, "Tokens billed to your organisation: chat completions, responses, " +
    "messages and LoRA validations."), form, results);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });

  async function load() {
    replace(results, el("p", {}, "Loading…"));
    const chosen = RANGES[range.value];
    const end = Math.floor(Date.now() / 1000) + 1;
    // buckets on whole hours or days (UTC), the last one holding now
    const width = chosen.bucket === "1h" ? 3600 : 86400;
    const start = Math.floor(end / width) * width - (Math.round(chosen.seconds / width) - 1) * width;
    try {
      const [buckets, names] = await Promise.all([
        allBuckets({ start_time: start, end_time: end, bucket_width: chosen.bucket, limit: chosen.limit,
          group_by: group.value || undefined }),
        group.value === "lora_id" ? loraNames() : Promise.resolve(new Map()),
      ]);
      replace(results, totals(buckets), bucketTable(buckets, group.value, names, chosen.bucket));
    } catch (error) {
      replace(results, errorBox(error));
    }
  }
  await load();
}

async function allBuckets(params, maxPages = 5) {
  const buckets = [];
  let pageToken;
  for (let n = 0; n < maxPages; n += 1) {
    const answer = await api(`/organization/usage/completions${query({ ...params, page: pageToken })}`);
    buckets.push(...answer.data);
    if (!answer.has_more || !answer.next_page) break;
    pageToken = answer.next_page;
  }
  return buckets;
}

async function loraNames() {
  const loras = await listAll("/loras");
  return new Map(loras.map((lora) => [lora.id, lora.name]));
}

function totals(buckets) {
  const all = buckets.flatMap((bucket) => bucket.results);
  const sum = (key) => all.reduce((total, result) => total + (result[key] || 0), 0);
  const facts = [["Requests", sum("num_model_requests")], ["Input tokens", sum("input_tokens")],
    ["Output tokens", sum("output_tokens")]];
  return el("dl", { class: "facts totals", id: "usage-totals" },
    facts.map(([label, value]) => [el("dt", {}, label), el("dd", {}, value.toLocaleString())]));
}

function bucketTable(buckets, groupBy, names, width) {
  const rows = [];
  const max = Math.max(1, ...buckets.flatMap((b) => b.results.map((r) => r.input_tokens + r.output_tokens)));
  for (const bucket of buckets.slice().reverse()) {
    const start = new Date(bucket.start_time * 1000);
    const when = width === "1h" ? start.toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : start.toLocaleDateString();
    for (const result of bucket.results) {
      const tokens = result.input_tokens + result.output_tokens;
      rows.push(el("tr", {},
        el("td", {}, el("time", { datetime: start.toISOString() }, when)),
        groupBy ? el("td", {}, groupLabel(result, groupBy, names)) : null,
        el("td", {}, String(result.num_model_requests)),
        el("td", {}, result.input_tokens.toLocaleString()),
        el("td", {}, result.output_tokens.toLocaleString()),
        el("td", {}, el("meter", { min: "0", max: String(max), value: String(tokens), "aria-label": `${tokens} tokens` }))));
    }
  }
  if (!rows.length) return el("p", {}, "No usage in this period.");
  const headers = ["Period", groupBy ? GROUPS[groupBy] : null, "Requests", "Input tokens", "Output tokens", "Share"]
    .filter(Boolean);
  return table("Usage per period", headers, rows);
}

function groupLabel(result, groupBy, names) {
  const value = result[groupBy];
  if (groupBy === "lora_id") return value ? (names.get(value) ?? `${value} (deleted)`) : "base model";
  return value ?? "–";
}
