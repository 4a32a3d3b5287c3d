// Keeping LoRA objects current from lora.* events. Every event carries the LoRA as stored and an
// increasing `version`, so the newest one seen wins and a late or repeated event changes nothing.

const versions = new Map(); // LoRA id -> newest version seen in an event
const deleted = new Set();

export function isNewer(event) {
  const lora = event.data?.lora;
  const version = event.data?.version;
  if (!lora?.id) return false;
  if (deleted.has(lora.id)) return false;
  if (typeof version === "number") {
    if (version <= (versions.get(lora.id) ?? -1)) return false;
    versions.set(lora.id, version);
  }
  if (event.type === "lora.deleted") deleted.add(lora.id);
  return true;
}

// The list with the event's LoRA put in (created, updated, validation finished) or taken out (deleted).
export function applyLoraEvent(loras, event) {
  if (!isNewer(event)) return loras;
  const lora = event.data.lora;
  const rest = loras.filter((item) => item.id !== lora.id);
  if (event.type === "lora.deleted") return rest;
  const index = loras.findIndex((item) => item.id === lora.id);
  if (index < 0) return [lora, ...rest];
  const copy = loras.slice();
  copy[index] = lora;
  return copy;
}

export function forgetDeleted(id) {
  deleted.delete(id);
}

// Each model's validation records, oldest first, and its latest record.
export function recordsByModel(lora) {
  const byModel = new Map(lora.supported_models.map((model) => [model, []]));
  for (const record of lora.validations || []) {
    if (!byModel.has(record.model)) byModel.set(record.model, []);
    byModel.get(record.model).push(record);
  }
  return byModel;
}

export function latestByModel(lora) {
  const latest = new Map();
  for (const [model, records] of recordsByModel(lora)) {
    if (records.length) latest.set(model, records[records.length - 1]);
  }
  return latest;
}

export const ACTIVE = new Set(["pending", "running"]);
