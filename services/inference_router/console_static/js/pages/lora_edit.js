// Changing a LoRA: PATCH its display name, description or models (an added model gets a validation
// record), and DELETE it after a confirmation.

import { api, encodeRef, models } from "../api.js";
import { el, field, showError, whileBusy } from "../dom.js";

export function editForm(lora, onSaved) {
  const displayName = el("input", { type: "text", value: lora.display_name || "", maxlength: "256" });
  const description = el("textarea", { rows: "3", maxlength: "4096" });
  description.value = lora.description || "";
  const addModel = el("select", {}, el("option", { value: "" }, "(none)"));
  const problem = el("div", { class: "error", role: "alert", hidden: true });
  const button = el("button", { type: "submit" }, "Save changes");
  models().then((all) => {
    for (const model of all.filter((m) => !lora.supported_models.includes(m.id))) {
      addModel.append(el("option", { value: model.id }, model.display_name ? `${model.display_name} (${model.id})` : model.id));
    }
  }).catch((error) => showError(problem, error));

  const form = el("form", { class: "card", "aria-labelledby": "edit-h" },
    el("h2", { id: "edit-h" }, "Edit"),
    field("Display name", displayName),
    field("Description", description),
    field("Add a model", addModel, "The LoRA is validated on the model you add."),
    problem, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const patch = { display_name: displayName.value, description: description.value };
    if (addModel.value) patch.supported_models = [...lora.supported_models, addModel.value];
    await whileBusy(button, problem, async () => {
      onSaved(await api(`/loras/${encodeRef(lora.id)}`, { method: "PATCH", json: patch }));
    });
  });
  return form;
}

export function deleteDialog(lora) {
  const problem = el("div", { class: "error", role: "alert", hidden: true });
  const confirm = el("button", { type: "button", class: "danger", id: "confirm-delete" }, `Delete ${lora.name}`);
  const cancel = el("button", { type: "button", class: "secondary" }, "Cancel");
  const dialog = el("dialog", { "aria-labelledby": "delete-h", "aria-describedby": "delete-d" },
    el("h2", { id: "delete-h" }, `Delete ${lora.name}?`),
    el("p", { id: "delete-d" },
      "Requests naming it will be refused from now on. Its two files are kept (delete them on the Files page)."),
    problem, el("div", { class: "actions" }, cancel, confirm));
  cancel.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", () => whileBusy(confirm, problem, async () => {
    await api(`/loras/${encodeRef(lora.id)}`, { method: "DELETE" });
    dialog.close();
    location.hash = "#/loras";
  }));
  const open = el("button", { type: "button", class: "danger", onclick: () => dialog.showModal() }, "Delete…");
  return el("section", { class: "card", "aria-labelledby": "danger-h" },
    el("h2", { id: "danger-h" }, "Delete"), open, dialog);
}
