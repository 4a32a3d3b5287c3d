// The key gate: the key is checked against the API once, then kept in sessionStorage for this tab.

import { api, apiKey } from "../api.js";
import { el, errorBox, field, page, showError } from "../dom.js";

export function renderLogin(onSignedIn, refused = null) {
  const input = el("input", {
    type: "password", name: "api-key", autocomplete: "off", spellcheck: "false", required: true,
  });
  const problem = refused ? errorBox(refused) : el("div", { class: "error", role: "alert", hidden: true });
  const button = el("button", { type: "submit" }, "Open the console");
  const form = el("form", { class: "card narrow", "aria-describedby": "key-note" },
    field("API key", input, "The key of your organisation, e.g. lsk-…"),
    el("p", { id: "key-note", class: "hint" },
      "The key stays in this browser tab (session storage) and is sent only to this platform's /v1 API, " +
      "in the Authorization header. Log out or close the tab to forget it."),
    problem, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    button.disabled = true;
    try {
      await api("/models", { key });
      apiKey.set(key);
      input.value = "";
      onSignedIn();
    } catch (error) {
      showError(problem, error);
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  page("Sign in", form);
  input.focus();
}
