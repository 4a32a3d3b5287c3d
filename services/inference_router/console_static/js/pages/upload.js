// Upload: pick or drop an adapter folder (or its two files), check it locally, upload both files in
// parts with a progress bar, create the LoRA and land on its live detail page.

import { api, models } from "../api.js";
import { CONFIG, WEIGHTS, checkAdapter, droppedFiles, nameFrom } from "../adapter_check.js";
import { el, field, formatBytes, formatDuration, page, replace, showError } from "../dom.js";
import { Uploader } from "../uploader.js";

export async function renderUpload() {
  const state = { check: null, uploader: null };
  const folderInput = el("input", { type: "file", webkitdirectory: true, id: "pick-folder" });
  const filesInput = el("input", { type: "file", multiple: true, accept: ".json,.safetensors", id: "pick-files" });
  const drop = el("div", { class: "dropzone", id: "dropzone" },
    el("p", {}, "Drop an adapter folder, or its two files, here."),
    el("p", { class: "hint" }, `It needs ${CONFIG} and ${WEIGHTS}.`));
  const checks = el("div", { id: "local-check", "aria-live": "polite" });
  const name = el("input", { type: "text", required: true, pattern: "[a-z0-9][a-z0-9\\-]{0,62}[a-z0-9]", maxlength: "64", id: "lora-name" });
  const displayName = el("input", { type: "text", maxlength: "256", id: "lora-display-name" });
  const description = el("textarea", { rows: "2", maxlength: "4096", id: "lora-description-input" });
  const modelBoxes = el("fieldset", { class: "models" }, el("legend", {}, "Models to validate it on"));
  const problem = el("div", { class: "error", role: "alert", hidden: true });
  const progress = progressView();
  const submit = el("button", { type: "submit", id: "upload-submit", disabled: true }, "Upload and create");
  const resume = el("button", { type: "button", id: "upload-resume", hidden: true }, "Resume upload");

  const form = el("form", { class: "card", "aria-labelledby": "details-h" },
    el("h2", { id: "details-h" }, "2. Name it"),
    field("Name", name, "2–64 characters: a-z, 0-9 and -; unique in your organisation."),
    modelBoxes, field("Display name (optional)", displayName), field("Description (optional)", description),
    problem, progress.node, el("div", { class: "actions" }, submit, resume));

  page("Upload a LoRA",
    el("section", { class: "card", "aria-labelledby": "pick-h" },
      el("h2", { id: "pick-h" }, "1. Choose the adapter"),
      el("div", { class: "pickers" }, field("A folder", folderInput), field("Or the two files", filesInput)),
      drop, checks),
    form);

  models().then((list) => {
    for (const model of list) {
      const box = el("input", { type: "checkbox", name: "model", value: model.id, id: `model-${model.id.replace(/\W/g, "-")}` });
      modelBoxes.append(el("div", { class: "check" }, box, el("label", { for: box.id }, model.display_name
        ? `${model.display_name} (${model.id})` : model.id)));
    }
    tickConfiguredModel();
  }).catch((error) => showError(problem, error));

  // the model the config was trained on (base_model_name_or_path ends with its id) starts ticked
  function tickConfiguredModel() {
    const fromConfig = state.check?.configJson?.base_model_name_or_path;
    if (typeof fromConfig !== "string") return;
    for (const box of modelBoxes.querySelectorAll("input[type=checkbox]")) {
      if (fromConfig.toLowerCase().endsWith(box.value.toLowerCase())) box.checked = true;
    }
  }

  async function choose(files, folder) {
    state.uploader = null;
    resume.hidden = true;
    state.check = await checkAdapter(files);
    showCheck(checks, state.check);
    submit.disabled = state.check.problems.length > 0;
    if (folder && !name.value) name.value = nameFrom(folder);
    tickConfiguredModel();
  }
  folderInput.addEventListener("change", () => {
    const files = [...folderInput.files].filter((f) => f.webkitRelativePath.split("/").length === 2);
    choose(files, folderInput.files[0]?.webkitRelativePath.split("/")[0]);
  });
  filesInput.addEventListener("change", () => choose([...filesInput.files], null));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const { files, folder } = await droppedFiles(event.dataTransfer);
    choose(files, folder);
  });

  async function uploadAndCreate() {
    const chosen = [...modelBoxes.querySelectorAll("input:checked")].map((box) => box.value);
    if (!chosen.length) {
      showError(problem, { message: "Choose at least one model." });
      return;
    }
    problem.hidden = true;
    submit.disabled = true;
    resume.hidden = true;
    state.uploader ??= new Uploader([state.check.config, state.check.weights], progress.update);
    try {
      const [configId, weightsId] = await state.uploader.run();
      progress.status("Both files uploaded. Creating the LoRA…");
      const lora = await api("/loras", {
        method: "POST",
        json: {
          name: name.value.trim(), supported_models: chosen, config_file_id: configId, weights_file_id: weightsId,
          display_name: displayName.value.trim() || undefined, description: description.value || undefined,
        },
      });
      location.hash = `#/loras/${encodeURIComponent(lora.name)}`;
    } catch (error) {
      showError(problem, error);
      // a failed create keeps the uploaded files: fix the name and submit again, nothing is re-sent
      resume.hidden = state.uploader.done >= state.uploader.total;
      submit.disabled = false;
      if (!resume.hidden) resume.focus();
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    uploadAndCreate();
  });
  resume.addEventListener("click", uploadAndCreate);
}

function showCheck(node, check) {
  const ok = !check.problems.length;
  replace(node,
    el("p", { class: ok ? "notice" : "error", role: ok ? "status" : "alert" },
      ok ? `Both files are here and the config parses (${formatBytes(check.config.size + check.weights.size)}).`
        : "This is not an adapter the platform can take:"),
    ok ? null : el("ul", {}, check.problems.map((text) => el("li", {}, text))),
    check.facts.length ? el("dl", { class: "facts" }, check.facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])) : null);
}

function progressView() {
  const bar = el("progress", { max: "1", value: "0", id: "upload-progress", "aria-labelledby": "upload-progress-label" });
  const label = el("p", { id: "upload-progress-label" }, "Upload progress");
  const text = el("p", { id: "upload-progress-text", role: "status" });
  const node = el("div", { class: "progress", hidden: true }, label, bar, text);
  return {
    node,
    update({ done, total, rate, secondsLeft }) {
      node.hidden = false;
      bar.max = Math.max(total, 1);
      bar.value = done;
      const percent = total ? Math.floor((done / total) * 100) : 100;
      text.textContent = `${formatBytes(done)} of ${formatBytes(total)} (${percent}%)` +
        (Number.isFinite(rate) ? ` · ${formatBytes(rate)}/s` : "") +
        (done < total ? ` · ${formatDuration(secondsLeft)} left` : "");
      bar.dataset.percent = String(percent);
    },
    status(message) {
      text.textContent = `${text.textContent.split(" · ")[0]} · ${message}`;
    },
  };
}
