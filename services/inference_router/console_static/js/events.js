// One stream of the org's events (GET /v1/events) shared by every page, read with fetch() because
// EventSource cannot send an Authorization header. It reconnects with Last-Event-ID (the registry
// replays what was missed), backing off; pages subscribe and are told when the stream (re)connects,
// so that they can reload what they show if the server could not replay.

import { authHeaders, errorFrom, readEvents } from "./api.js";

const RETRY_SECONDS = [1, 2, 5, 10, 30];
const RECENT_LIMIT = 200;

class EventFeed {
  constructor() {
    this.listeners = new Set();
    this.stateListeners = new Set();
    this.recent = [];
    this.lastId = null;
    this.state = "idle";
    this.failures = 0;
    this.connections = 0;
    this.controller = null;
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onState(listener) {
    this.stateListeners.add(listener);
    listener(this.state, this.lastError);
    return () => this.stateListeners.delete(listener);
  }

  setState(state, error = null) {
    this.state = state;
    this.lastError = error;
    this.stateListeners.forEach((listener) => listener(state, error));
  }

  start() {
    if (this.controller) return;
    this.controller = new AbortController();
    this.run(this.controller.signal);
  }

  stop() {
    this.controller?.abort();
    this.controller = null;
    this.setState("idle");
  }

  async run(signal) {
    while (!signal.aborted) {
      try {
        await this.connectOnce(signal);
        this.failures = 0; // the server ended a healthy stream (a restart): reconnect at once
      } catch (error) {
        if (signal.aborted) return;
        if (error.status === 401) {
          this.setState("stopped", error);
          return;
        }
        this.failures += 1;
        this.setState("reconnecting", error);
        const wait = RETRY_SECONDS[Math.min(this.failures - 1, RETRY_SECONDS.length - 1)];
        await sleep(wait * 1000, signal);
      }
    }
  }

  async connectOnce(signal) {
    this.setState("connecting");
    const headers = { ...authHeaders(), Accept: "text/event-stream" };
    if (this.lastId) headers["Last-Event-ID"] = this.lastId;
    const response = await fetch("/v1/events", { headers, signal, cache: "no-store" });
    if (!response.ok) {
      const error = await errorFrom(response);
      // an id this server cannot resume from (an older registry, or one from another stream): start afresh
      if (error.code === "invalid_event_id") this.lastId = null;
      throw error;
    }
    this.failures = 0;
    this.connections += 1;
    this.setState("live");
    if (this.connections > 1) this.listeners.forEach((listener) => listener({ type: "stream.reconnected" }));
    await readEvents(response.body, (frame) => this.dispatch(frame));
    throw new Error("the event stream ended");
  }

  dispatch(frame) {
    if (frame.id) this.lastId = frame.id;
    if (frame.event === "error") {
      // the log cannot serve our resume point (expired): its id is where to pick up; pages reload
      this.listeners.forEach((listener) => listener({ type: "stream.gap" }));
      return;
    }
    let cloudEvent;
    try {
      cloudEvent = JSON.parse(frame.data);
    } catch {
      return;
    }
    const event = { id: frame.id, type: frame.event || cloudEvent.type, cloudEvent, data: cloudEvent.data ?? {} };
    this.recent.unshift(event);
    this.recent.length = Math.min(this.recent.length, RECENT_LIMIT);
    this.listeners.forEach((listener) => listener(event));
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

export const feed = new EventFeed();
