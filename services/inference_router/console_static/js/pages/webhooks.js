// Webhooks: the org's webhook endpoints (/v1/webhook_endpoints): create one (its signing secret is shown
// once), and per endpoint enable/disable, rotate the secret, send a test event, see deliveries, delete.

import { api, listAll } from "../api.js";
import { el, errorBox, field, page, replace, whileBusy } from "../dom.js";
import { endpointCard } from "./webhook_endpoint.js";

export async function renderWebhooks() {
  const list = el("div", { id: "webhook-list" }, el("p", {}, "Loading…"));
  const secretBox = el("div", { id: "webhook-secret", "aria-live": "polite" });
  const createSection = el("div");
  page("Webhooks", el("p", { class: "hint" }, "The platform POSTs your organisation's events to these URLs, " +
    "signed as Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)."), secretBox, createSection, list);

  let types;
  try {
    types = await api("/webhook_event_types");
  } catch (error) {
    replace(list, errorBox(error), error.status === 404
      ? el("p", {}, "This platform does not serve the webhooks API yet.") : null);
    return;
  }
  const showSecret = (endpoint) => replace(secretBox, secretNotice(endpoint));
  replace(createSection, createForm(types, (endpoint) => { showSecret(endpoint); load(); }));

  async function load() {
    try {
      const endpoints = await listAll("/webhook_endpoints");
      replace(list, endpoints.length ? endpoints.map((endpoint) => endpointCard(endpoint, types, { reload: load, showSecret }))
        : el("p", {}, "No webhook endpoints yet."));
    } catch (error) {
      replace(list, errorBox(error));
    }
  }
  await load();
}

function createForm(types, onCreated) {
  const name = el("input", { type: "text", required: true, maxlength: "256", id: "wh-name" });
  const url = el("input", { type: "url", required: true, maxlength: "2048", placeholder: "https://example.com/hooks", id: "wh-url" });
  const boxes = el("fieldset", { class: "models" }, el("legend", {}, "Event types"),
    types.data.map((type) => {
      const box = el("input", { type: "checkbox", value: type, id: `wh-type-${type.replace(/\W/g, "-")}` });
      return el("div", { class: "check" }, box, el("label", { for: box.id }, type),
        types.descriptions?.[type] ? el("span", { class: "hint" }, ` ${types.descriptions[type]}`) : null);
    }));
  const problem = el("div", { class: "error", role: "alert", hidden: true });
  const button = el("button", { type: "submit" }, "Add endpoint");
  const form = el("form", { class: "card", "aria-labelledby": "wh-create-h" },
    el("h2", { id: "wh-create-h" }, "Add an endpoint"), field("Name", name), field("URL", url), boxes, problem, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const eventTypes = [...boxes.querySelectorAll("input:checked")].map((box) => box.value);
    await whileBusy(button, problem, async () => {
      const json = { name: name.value, url: url.value, event_types: eventTypes };
      const endpoint = await api("/webhook_endpoints", { method: "POST", json });
      form.reset();
      onCreated(endpoint);
    });
  });
  return form;
}

function secretNotice(endpoint) {
  const secret = el("code", { id: "wh-secret-value" }, endpoint.signing_secret);
  const dismiss = el("button", { type: "button", class: "secondary small" }, "I have stored it");
  const notice = el("div", { class: "card notice", role: "status" },
    el("p", {}, `Signing secret of ${endpoint.name}. It is shown this once: store it with your receiver.`),
    el("p", {}, secret), dismiss);
  dismiss.addEventListener("click", () => notice.remove());
  return notice;
}
