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
  copy[index] = mergeSnapshot(loras[index], lora);
  return copy;
}

// A fresh listing put over what events already showed (see mergeSnapshot): deleted ones stay out.
export function mergeListing(current, listing) {
  const known = new Map(current.map((lora) => [lora.id, lora]));
  return listing.filter((lora) => !deleted.has(lora.id)).map((lora) => mergeSnapshot(known.get(lora.id), lora));
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

// A LoRA from an API answer (GET, PATCH) put over what events already showed. An answer carries no
// version and may have been read before an event that arrived first; a record only moves forward
// (pending, running, then an end), so the further along of each record's two states is the newer.
const PROGRESS = { pending: 0, running: 1 };
const progressOf = (record) => PROGRESS[record.status] ?? 2;

export function mergeSnapshot(current, snapshot) {
  if (!current || current.id !== snapshot.id) return snapshot;
  const seen = new Map(current.validations.map((record) => [record.id, record]));
  const validations = snapshot.validations.map((record) => {
    const known = seen.get(record.id);
    return known && progressOf(known) > progressOf(record) ? known : record;
  });
  const kept = new Set(validations.map((record) => record.id));
  validations.push(...current.validations.filter((record) => !kept.has(record.id)));
  validations.sort((a, b) => a.created_at - b.created_at);
  return { ...snapshot, validations, status: statusOf(snapshot.supported_models, validations) };
}

// The registry's rule: pending while a supported model's latest record is; else ready if one succeeded
// or is unverified; else failed.
function statusOf(models, validations) {
  const latest = latestByModel({ supported_models: models, validations });
  const records = models.map((model) => latest.get(model)).filter(Boolean);
  if (records.some((record) => ACTIVE.has(record.status))) return "pending_validation";
  return records.some((record) => ["succeeded", "unverified"].includes(record.status)) ? "ready" : "failed";
}
