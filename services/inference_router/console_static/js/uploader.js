// Uploading files through the Uploads API in parts (POST /v1/uploads, .../parts, .../complete), with
// the bytes sent so far, the rate and the time left. Parts go by XMLHttpRequest because fetch() does not
// report upload progress. A part that fails on the network is retried; when it keeps failing, run()
// throws and a later run() resumes: finished parts are kept, only the missing ones are sent again.

import { ApiError, authHeaders, api } from "./api.js";

export const PART_BYTES = 8 * 1024 * 1024;
const RETRY_DELAYS_MS = [1000, 3000];
const RATE_WINDOW_MS = 5000;

export class Uploader {
  constructor(files, onProgress, partBytes = PART_BYTES) {
    this.items = files.map((file) => ({ file, uploadId: null, parts: splitParts(file.size, partBytes), fileId: null }));
    this.total = files.reduce((sum, file) => sum + file.size, 0);
    this.onProgress = onProgress;
    this.samples = [];
    this.current = 0;
  }

  get done() {
    const finished = this.items.flatMap((item) => item.parts).filter((part) => part.id).reduce((s, p) => s + p.size, 0);
    return Math.min(this.total, finished + this.current);
  }

  // The ids of the finished Files, in the order given.
  async run() {
    this.samples = [{ at: performance.now(), done: this.done }];
    this.report();
    for (const item of this.items) {
      if (!item.fileId) item.fileId = await this.uploadOne(item);
    }
    this.report();
    return this.items.map((item) => item.fileId);
  }

  async uploadOne(item) {
    if (!item.uploadId) {
      const upload = await api("/uploads", {
        method: "POST",
        json: { bytes: item.file.size, filename: item.file.name, mime_type: mimeOf(item.file), purpose: "lora" },
      });
      item.uploadId = upload.id;
    }
    for (const part of item.parts) {
      if (!part.id) part.id = await this.sendWithRetries(item, part);
    }
    const done = await api(`/uploads/${item.uploadId}/complete`, {
      method: "POST", json: { part_ids: item.parts.map((part) => part.id) },
    });
    return done.file.id;
  }

  async sendWithRetries(item, part) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.sendPart(item, part);
      } catch (error) {
        this.current = 0;
        if (error.status === 404) {
          // the upload expired or is gone: start this file again from its first part on resume
          item.uploadId = null;
          item.parts.forEach((p) => { p.id = null; });
          throw new ApiError(`${error.message} The file will be uploaded again when you resume.`, error);
        }
        const retryable = error.code === "network_error" || error.status === 429 || error.status >= 500;
        if (!retryable || attempt >= RETRY_DELAYS_MS.length) throw error;
        await new Promise((resolve) => setTimeout(resolve, RETRY_DELAYS_MS[attempt]));
      }
    }
  }

  sendPart(item, part) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", `/v1/uploads/${encodeURIComponent(item.uploadId)}/parts`);
      for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
      request.responseType = "text";
      request.upload.onprogress = (event) => {
        this.current = Math.min(part.size, event.loaded);
        this.report();
      };
      request.onload = () => {
        this.current = 0;
        if (request.status === 200) resolve(JSON.parse(request.responseText).id);
        else reject(apiErrorOf(request));
      };
      request.onerror = () => reject(new ApiError("The connection failed while sending a part.", { code: "network_error" }));
      request.ontimeout = request.onerror;
      const form = new FormData();
      form.append("data", item.file.slice(part.start, part.start + part.size), item.file.name);
      request.send(form);
    });
  }

  report() {
    const now = performance.now();
    const done = this.done;
    this.samples.push({ at: now, done });
    while (this.samples.length > 2 && now - this.samples[0].at > RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0];
    const seconds = (now - first.at) / 1000;
    const rate = seconds > 0.2 ? (done - first.done) / seconds : NaN;
    const left = rate > 0 ? (this.total - done) / rate : NaN;
    this.onProgress({ done, total: this.total, rate, secondsLeft: done >= this.total ? 0 : left });
  }
}

function splitParts(size, partBytes) {
  const parts = [];
  for (let start = 0; start < size || parts.length === 0; start += partBytes) {
    parts.push({ start, size: Math.min(partBytes, size - start), id: null });
  }
  return parts;
}

function mimeOf(file) {
  return file.name.endsWith(".json") ? "application/json" : "application/octet-stream";
}

function apiErrorOf(request) {
  let error = null;
  try {
    error = JSON.parse(request.responseText).error;
  } catch {
    // not JSON
  }
  return new ApiError(error?.message || `${request.status} ${request.statusText || "part upload failed"}`,
    { status: request.status, code: error?.code ?? null });
}
