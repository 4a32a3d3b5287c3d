// The checks an adapter gets in the browser before anything is sent: both files are there, the config
// parses as a JSON object, and the weights start with a safetensors header that parses. The platform's
// validator does the real checks; these catch the wrong folder before a long upload.

export const CONFIG = "adapter_config.json";
export const WEIGHTS = "adapter_model.safetensors";
const MAX_CONFIG_BYTES = 1024 * 1024;
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

// {config, weights, problems: [text], facts: [[label, value]], configJson}
export async function checkAdapter(files) {
  const byName = new Map(files.map((file) => [file.name, file]));
  const result = { config: byName.get(CONFIG), weights: byName.get(WEIGHTS), problems: [], facts: [], configJson: null };
  if (!result.config) result.problems.push(`${CONFIG} is missing.`);
  if (!result.weights) result.problems.push(`${WEIGHTS} is missing.`);
  if (result.config) await checkConfig(result);
  if (result.weights) await checkWeights(result);
  return result;
}

async function checkConfig(result) {
  if (result.config.size > MAX_CONFIG_BYTES) {
    result.problems.push(`${CONFIG} is ${result.config.size} bytes: too large for an adapter config.`);
    return;
  }
  let parsed;
  try {
    parsed = JSON.parse(await result.config.text());
  } catch (error) {
    result.problems.push(`${CONFIG} is not valid JSON: ${error.message}`);
    return;
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    result.problems.push(`${CONFIG} must hold a JSON object.`);
    return;
  }
  result.configJson = parsed;
  const targets = parsed.target_modules;
  result.facts.push(
    ["PEFT type", String(parsed.peft_type ?? "–")],
    ["Base model", String(parsed.base_model_name_or_path ?? "–")],
    ["Rank", String(parsed.r ?? "–")],
    ["Alpha", String(parsed.lora_alpha ?? "–")],
    ["Target modules", Array.isArray(targets) ? targets.join(", ") : String(targets ?? "–")]);
}

async function checkWeights(result) {
  const weights = result.weights;
  if (weights.size < 8) {
    result.problems.push(`${WEIGHTS} is too short to be a safetensors file.`);
    return;
  }
  const length = new DataView(await weights.slice(0, 8).arrayBuffer()).getBigUint64(0, true);
  if (length > BigInt(Math.min(MAX_HEADER_BYTES, weights.size - 8))) {
    result.problems.push(`${WEIGHTS} does not start with a safetensors header (header length ${length}).`);
    return;
  }
  let header;
  try {
    header = JSON.parse(await weights.slice(8, 8 + Number(length)).text());
  } catch (error) {
    result.problems.push(`${WEIGHTS}: its safetensors header is not valid JSON (${error.message}).`);
    return;
  }
  const tensors = Object.keys(header).filter((name) => name !== "__metadata__");
  result.facts.push(["Tensors", String(tensors.length)]);
}

// The files of a dropped folder (one level) or the files themselves.
export async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  const directory = entries.find((entry) => entry.isDirectory);
  if (!directory) return { files: [...dataTransfer.files], folder: null };
  const children = await new Promise((resolve, reject) => directory.createReader().readEntries(resolve, reject));
  const files = await Promise.all(children.filter((entry) => entry.isFile)
    .map((entry) => new Promise((resolve, reject) => entry.file(resolve, reject))));
  return { files, folder: directory.name };
}

// A LoRA name from a folder name: [a-z0-9-], 2-64 characters, alphanumeric at both ends.
export function nameFrom(folder) {
  const name = (folder || "").toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 64);
  return name.length >= 2 ? name.replace(/-+$/, "") : "";
}
