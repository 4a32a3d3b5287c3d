// The console's shell: the key gate, the navigation and a hash router (#/loras/NAME), so that every
// page is a static file and the server needs no fallback route.

import { apiKey, onUnauthorized } from "./api.js";
import { feed } from "./events.js";
import { renderLogin } from "./pages/login.js";
import { renderLoraList } from "./pages/loras.js";
import { renderLoraDetail } from "./pages/lora_detail.js";
import { renderUpload } from "./pages/upload.js";
import { renderPlayground } from "./pages/playground.js";
import { renderFiles } from "./pages/files.js";
import { renderEvents } from "./pages/events_page.js";
import { renderUsage } from "./pages/usage.js";
import { renderWebhooks } from "./pages/webhooks.js";
import { renderResponse } from "./pages/response.js";
import { page } from "./dom.js";

const ROUTES = [
  [/^\/loras\/?$/, renderLoraList, "/loras"],
  [/^\/loras\/([^/]+)$/, renderLoraDetail, "/loras"],
  [/^\/upload$/, renderUpload, "/upload"],
  [/^\/playground$/, renderPlayground, "/playground"],
  [/^\/files$/, renderFiles, "/files"],
  [/^\/events$/, renderEvents, "/events"],
  [/^\/usage$/, renderUsage, "/usage"],
  [/^\/webhooks$/, renderWebhooks, "/webhooks"],
  [/^\/responses\/([^/]+)$/, renderResponse, "/loras"],
];

let cleanup = null;

function currentPath() {
  const hash = location.hash.replace(/^#/, "");
  return hash.split("?")[0] || "/loras";
}

export function navigate(path) {
  if (currentPath() === path) route();
  else location.hash = `#${path}`;
}

function markNav(section) {
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#${section}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showChrome(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("logout").hidden = !signedIn;
  document.getElementById("live").hidden = !signedIn;
}

async function route() {
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  if (!apiKey.get()) {
    showChrome(false);
    feed.stop();
    renderLogin(() => route());
    return;
  }
  showChrome(true);
  feed.start();
  const path = currentPath();
  for (const [pattern, render, section] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      markNav(section);
      cleanup = await render(...match.slice(1).map(decodeURIComponent));
      return;
    }
  }
  markNav(null);
  page("Not found", `There is no console page at ${path}.`);
}

function logOut() {
  apiKey.clear();
  feed.stop();
  // a fresh document: nothing the previous key loaded stays in memory
  location.replace(`${location.pathname}#/loras`);
  location.reload();
}

function showLiveState() {
  const live = document.getElementById("live");
  feed.onState((state) => {
    const labels = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", stopped: "Offline", idle: "" };
    live.textContent = labels[state] ?? state;
    live.dataset.state = state;
  });
}

document.getElementById("logout").addEventListener("click", logOut);
onUnauthorized((error) => {
  // a revoked key: back to the gate, with the API's message shown there
  if (!apiKey.get()) return;
  apiKey.clear();
  feed.stop();
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  showChrome(false);
  renderLogin(() => route(), error);
});
window.addEventListener("hashchange", route);
// a page kept in the back/forward cache must not hold its stream open: over HTTP/1.1 a browser has six
// connections per host, and a few hidden streams would leave none for the API calls of the open tab
window.addEventListener("pagehide", () => feed.stop());
window.addEventListener("pageshow", (event) => {
  if (event.persisted && apiKey.get()) feed.start();
});
showLiveState();
route();
