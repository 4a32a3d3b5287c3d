// Files: the org's files a page at a time (newest first), download, delete; file.* events reload the page.

import { api, authHeaders, errorFrom, query } from "../api.js";
import { age, el, errorBox, formatBytes, page, replace, showError, table, timeElement } from "../dom.js";
import { feed } from "../events.js";

const PAGE_SIZE = 20;

export async function renderFiles() {
  const cursors = [undefined]; // `after` of each page seen, to go back
  let index = 0;
  const results = el("div", {}, el("p", {}, "Loading…"));
  const problem = el("div", { class: "error", role: "alert", hidden: true });
  page("Files", el("p", { class: "hint" }, "Every file of your organisation. A file a LoRA uses cannot be deleted."),
    problem, results);

  async function load() {
    try {
      const list = await api(`/files${query({ limit: PAGE_SIZE, after: cursors[index] })}`);
      if (list.has_more) cursors[index + 1] = list.last_id;
      draw(list);
    } catch (error) {
      replace(results, errorBox(error));
    }
  }

  function draw(list) {
    if (!list.data.length && index === 0) {
      replace(results, el("p", {}, "No files yet."));
      return;
    }
    const go = (delta) => () => { index += delta; load(); };
    replace(results,
      table("Files", ["File", "Purpose", "Size", "Created", "Actions"], list.data.map((file) => row(file, problem, load))),
      el("nav", { class: "pager", "aria-label": "Pages" },
        el("button", { type: "button", class: "secondary", disabled: index === 0, onclick: go(-1) }, "Previous"),
        el("span", {}, `Page ${index + 1}`),
        el("button", { type: "button", class: "secondary", disabled: !list.has_more, onclick: go(1) }, "Next")));
  }

  const unsubscribe = feed.subscribe((event) => {
    if (event.type.startsWith("file.") || event.type.startsWith("stream.")) load();
  });
  await load();
  return unsubscribe;
}

function row(file, problem, reload) {
  const remove = el("button", { type: "button", class: "danger small" }, "Delete");
  remove.addEventListener("click", async () => {
    if (remove.dataset.armed !== "true") {
      // a second press confirms: no modal needed for a reversible-by-upload action, but never one click
      remove.dataset.armed = "true";
      remove.textContent = `Confirm: delete ${file.filename}`;
      return;
    }
    try {
      await api(`/files/${encodeURIComponent(file.id)}`, { method: "DELETE" });
      reload();
    } catch (error) {
      showError(problem, error);
    }
  });
  const download = el("button", { type: "button", class: "secondary small" }, "Download");
  download.addEventListener("click", () => downloadFile(file, problem));
  return el("tr", { "data-file": file.id },
    el("td", {}, el("div", {}, file.filename), el("code", { class: "hint" }, file.id)),
    el("td", {}, file.purpose),
    el("td", {}, formatBytes(file.bytes)),
    el("td", {}, timeElement(file.created_at, age(file.created_at))),
    el("td", { class: "actions" }, download, remove));
}

async function downloadFile(file, problem) {
  try {
    const response = await fetch(`/v1/files/${encodeURIComponent(file.id)}/content`, { headers: authHeaders() });
    if (!response.ok) throw await errorFrom(response);
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: file.filename, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    showError(problem, error);
  }
}
