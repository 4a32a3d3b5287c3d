// The public /v1 API, called from the browser with the user's key. The key lives in sessionStorage
// only (this tab, until it closes or the user logs out) and travels in the Authorization header only:
// never in a URL, never to another origin (the CSP's connect-src is 'self').

const KEY_ITEM = "loraserve.apiKey";
const BASE = "/v1";

export class ApiError extends Error {
  constructor(message, { status = 0, code = null, type = null, param = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.type = type;
    this.param = param;
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_ITEM),
  set: (key) => sessionStorage.setItem(KEY_ITEM, key),
  clear: () => sessionStorage.removeItem(KEY_ITEM),
};

const unauthorizedListeners = new Set();
export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

export function authHeaders(key = apiKey.get()) {
  return { Authorization: `Bearer ${key}` };
}

// The API's own error message (OpenAI's envelope, or Anthropic's), else the HTTP status line.
export async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's error page
  }
  const error = body && typeof body.error === "object" ? body.error : null;
  const message = error?.message || `${response.status} ${response.statusText || "request failed"}`;
  const apiError = new ApiError(message, {
    status: response.status, code: error?.code ?? null, type: error?.type ?? null, param: error?.param ?? null,
  });
  if (response.status === 401) unauthorizedListeners.forEach((listener) => listener(apiError));
  return apiError;
}

export function networkError(cause) {
  return new ApiError(`The API could not be reached (${cause?.message || "network error"}).`, { code: "network_error" });
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) search.append(name, item);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// fetch() a /v1 path with the key; JSON in and out. Throws ApiError with the API's message.
export async function api(path, { method = "GET", json, body, headers = {}, signal, key } = {}) {
  const init = { method, signal, headers: { ...authHeaders(key), ...headers }, cache: "no-store" };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(BASE + path, init);
  } catch (cause) {
    if (cause?.name === "AbortError") throw cause;
    throw networkError(cause);
  }
  if (!response.ok) throw await errorFrom(response);
  return response.status === 204 ? null : response.json();
}

// A POST whose answer is a stream of Server-Sent Events (streamed completions).
export async function streamPost(path, json, onEvent, signal) {
  let response;
  try {
    response = await fetch(BASE + path, {
      method: "POST", signal, cache: "no-store",
      headers: { ...authHeaders(), "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(json),
    });
  } catch (cause) {
    if (cause?.name === "AbortError") throw cause;
    throw networkError(cause);
  }
  if (!response.ok) throw await errorFrom(response);
  await readEvents(response.body, onEvent);
}

// Server-Sent Events from a fetch body: calls onEvent({id, event, data}) per frame; comments are skipped.
export async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const frame = parseFrame(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (frame) onEvent(frame);
      end = buffer.indexOf("\n\n");
    }
  }
}

function parseFrame(text) {
  const frame = { id: null, event: "message", data: [] };
  let seen = false;
  for (const line of text.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "data") frame.data.push(value);
    else if (name === "event") frame.event = value;
    else if (name === "id") frame.id = value;
    else continue;
    seen = true;
  }
  return seen ? { ...frame, data: frame.data.join("\n") } : null;
}

// Every page of an OpenAI-style list (data, has_more, last_id), up to `maxPages`.
export async function listAll(path, params = {}, maxPages = 10) {
  const items = [];
  let after;
  for (let pageNo = 0; pageNo < maxPages; pageNo += 1) {
    const page = await api(path + query({ ...params, limit: 100, after }));
    items.push(...page.data);
    if (!page.has_more || !page.last_id) break;
    after = page.last_id;
  }
  return items;
}

export const models = (() => {
  let cached = null;
  return () => {
    cached ??= api("/models").then((list) => list.data).catch((error) => {
      cached = null;
      throw error;
    });
    return cached;
  };
})();

export function encodeRef(ref) {
  return encodeURIComponent(ref);
}
