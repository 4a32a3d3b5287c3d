// One webhook endpoint's card: its state and the actions on it, and its delivery log on demand.

import { api, query } from "../api.js";
import { el, field, replace, statusBadge, table, timeElement, whileBusy } from "../dom.js";

export function endpointCard(endpoint, types, { reload, showSecret }) {
  const path = `/webhook_endpoints/${encodeURIComponent(endpoint.id)}`;
  const problem = el("div", { class: "error", role: "alert", hidden: true });
  const result = el("p", { class: "notice", role: "status" });
  const deliveries = el("div");
  const act = (label, action, cls = "secondary small") => {
    const button = el("button", { type: "button", class: cls }, label);
    button.addEventListener("click", () => whileBusy(button, problem, action));
    return button;
  };
  const testType = el("select", {}, types.data.map((type) => el("option", { value: type }, type)));
  let armed = false;
  const enabled = endpoint.status === "enabled";
  return el("section", { class: "card", "data-endpoint": endpoint.id, "aria-label": endpoint.name },
    el("h2", {}, endpoint.name, " ", statusBadge(endpoint.status)),
    el("dl", { class: "facts" },
      el("dt", {}, "URL"), el("dd", {}, el("code", {}, endpoint.url)),
      el("dt", {}, "Events"), el("dd", {}, endpoint.event_types.join(", ")),
      el("dt", {}, "Secret"), el("dd", {}, endpoint.signing_secret_hint ? `…${endpoint.signing_secret_hint}` : "–"),
      endpoint.status_reason ? [el("dt", {}, "Disabled because"), el("dd", {}, endpoint.status_reason)] : null,
      el("dt", {}, "Created"), el("dd", {}, timeElement(endpoint.created_at))),
    el("div", { class: "actions" },
      act(enabled ? "Disable" : "Enable", async () => {
        await api(path, { method: "POST", json: { status: enabled ? "disabled" : "enabled" } });
        reload();
      }),
      act("Rotate secret", async () => showSecret(await api(`${path}/rotate_secret`, { method: "POST", json: {} }))),
      field("Test event", testType),
      act("Send test", async () => {
        const answer = await api(`${path}/test`, { method: "POST", json: { event_type: testType.value } });
        result.textContent = `The receiver answered ${answer.status_code}.`;
      }),
      act("Deliveries", async () => replace(deliveries, await deliveryLog(path))),
      act("Delete", async () => {
        if (!armed) {
          armed = true;
          result.textContent = "Press Delete again to delete this endpoint.";
          return;
        }
        await api(path, { method: "DELETE" });
        reload();
      }, "danger small")),
    problem, result, deliveries);
}

async function deliveryLog(path) {
  const list = await api(`${path}/deliveries${query({ limit: 20 })}`);
  if (!list.data.length) return el("p", {}, "No deliveries yet.");
  return table("Deliveries", ["Event", "Status", "Attempts", "Created"], list.data.map((delivery) => {
    const last = delivery.attempts[delivery.attempts.length - 1];
    return el("tr", {},
      el("td", {}, el("code", {}, delivery.event_type)),
      el("td", {}, statusBadge(delivery.status), delivery.failure_reason ? ` ${delivery.failure_reason}` : null,
        delivery.next_attempt_at ? [" next ", timeElement(delivery.next_attempt_at)] : null),
      el("td", {}, `${delivery.attempt_count}`, last ? ` (last: ${last.status_code ?? last.error ?? "–"}, ${Math.round(last.latency_ms)} ms)` : null),
      el("td", {}, timeElement(delivery.created_at)));
  }));
}
