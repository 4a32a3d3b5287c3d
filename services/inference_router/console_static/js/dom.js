// Building the page. Every string goes in as a text node (textContent), never as HTML: names,
// descriptions and result messages come from users and the API. The page's CSP requires Trusted Types
// with no policy, so an innerHTML assignment with a string would throw rather than parse.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export function mainArea() {
  return document.getElementById("main");
}

let firstPage = true;

// On a move to another page its heading takes focus, so a screen reader announces it and Tab goes on
// from there; the first page of a load leaves focus at the start, where the skip link is.
export function page(title, ...children) {
  const heading = el("h1", { tabindex: "-1" }, title);
  replace(mainArea(), heading, ...children);
  document.title = `${title} · LoRAServe console`;
  if (!firstPage) heading.focus({ preventScroll: true });
  firstPage = false;
  return mainArea();
}

export function errorBox(error) {
  const box = el("div", { class: "error", role: "alert" });
  return showError(box, error);
}

export function showError(box, error) {
  const parts = [el("strong", {}, error.status ? `Error ${error.status}` : "Error"), ": ", error.message];
  if (error.code) parts.push(" ", el("code", {}, error.code));
  replace(box, ...parts);
  box.hidden = false;
  return box;
}

// Runs an API action with its button disabled meanwhile; an error shows as the API's message in `problem`.
export async function whileBusy(button, problem, action) {
  button.disabled = true;
  problem.hidden = true;
  try {
    await action();
  } catch (error) {
    showError(problem, error);
  } finally {
    button.disabled = false;
  }
}

export function statusBadge(status) {
  return el("span", { class: `badge badge-${String(status).replace(/[^a-z_]/g, "")}` }, status);
}

export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintNode = hint ? el("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
  return el("div", { class: "field" }, el("label", { for: id }, label), control, hintNode);
}

export function table(caption, headers, rows) {
  return el("div", { class: "table-wrap" },
    el("table", {},
      el("caption", { class: "visually-hidden" }, caption),
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)));
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

export function age(unixSeconds) {
  return `${formatDuration(Date.now() / 1000 - unixSeconds)} ago`;
}

export function timestamp(unixSeconds) {
  if (!unixSeconds) return "–";
  return new Date(unixSeconds * 1000).toLocaleString();
}

export function timeElement(unixSeconds, text) {
  if (!unixSeconds) return "–";
  const iso = new Date(unixSeconds * 1000).toISOString();
  return el("time", { datetime: iso, title: timestamp(unixSeconds) }, text ?? timestamp(unixSeconds));
}

export function copyButton(label, textOf) {
  return el("button", {
    type: "button", class: "secondary small",
    onclick: async (event) => {
      const button = event.currentTarget;
      try {
        await navigator.clipboard.writeText(textOf());
        button.textContent = "Copied";
      } catch {
        button.textContent = "Select and copy";
      }
      setTimeout(() => { button.textContent = label; }, 1500);
    },
  }, label);
}
