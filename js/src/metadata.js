// The graph metadata codec, reading side: the `vae_export.*` keys of a graph's metadata_props
// (docs/contract.md, "Metadata"), with the same rules and messages as the Python runtime's
// vae_export_runtime/codec.py. Structural keys (role, shapes, stride, export size, classes,
// likelihood) are validated strictly, and a graph without them is not one of ours;
// informational keys are kept as strings; a malformed class_names reads as no names.

import { RuntimeInputError } from "./errors.js";
import { MAX_CLASSES, MAX_ELEMENTS, MAX_STRIDE, MAX_VALUE_CHARS } from "./limits.js";
import { pyJsonString } from "./pyformat.js";

export const PREFIX = "vae_export.";
export const ROLES = ["encoder", "decoder", "classifier"];
export const LIKELIHOODS = ["bernoulli", "gaussian"];
const KNOWN = ["role", "latent_dim", "image_shape", "version", "checkpoint_sha256", "source", "opset", "exporter",
  "variant", "latent_shape", "likelihood", "stride", "export_size", "num_classes", "class_names"];

/**
 * What a graph's metadata says, typed. Shapes are without the batch axis, null marking a
 * symbolic dimension; imageShape null is a symbolic image size.
 * @typedef {object} GraphMetadata
 * @property {string} role
 * @property {(number | null)[]} latentShape
 * @property {number[] | null} imageShape
 * @property {string} likelihood
 * @property {string} variant
 * @property {number | null} stride
 * @property {[number, number] | null} exportSize the size a symbolic-size graph was exported at
 * @property {number} numClasses 0: unconditional
 * @property {string[]} classNames
 * @property {string} version
 * @property {string} checkpointSha256
 * @property {string} source
 * @property {string} opset
 * @property {string} exporter
 * @property {Record<string, string>} extra other keys (without the prefix), in order
 */

const INVALID = Symbol("invalid JSON");

// Python's str.strip(): the characters str.isspace() accepts. Not String.prototype.trim's set,
// which adds U+FEFF and lacks U+001C..U+001F and U+0085 (docs/contract.md, "Metadata").
const PY_SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const SURROUNDING_SPACE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "g");
/** @param {string} text */
export const pyStrip = (text) => text.replace(SURROUNDING_SPACE, "");

/**
 * JSON.parse, with Python's reading of numbers: json.loads makes `1.0` or `1e2` a float, which
 * no integer field accepts, while JSON.parse would make them the integers 1 and 100. So a
 * value holding such a number token is INVALID for the integer fields that use this.
 */
function parseIntegerJson(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return INVALID;
  }
  const bare = text.replace(/"(?:[^"\\]|\\.)*"/g, "").replace(/\b(?:true|false|null)\b/g, "");
  return /[.eE]/.test(bare) ? INVALID : value;
}

const isInt = (v) => typeof v === "number" && Number.isInteger(v);

class Reader {
  /** @param {Map<string, string>} ours @param {string} where */
  constructor(ours, where) {
    this.ours = ours;
    this.where = where;
  }

  fail(key, expected) {
    const chars = Array.from(this.ours.get(key) ?? ""); // code points, as Python slices
    const shown = pyJsonString(chars.slice(0, 60).join("") + (chars.length > 60 ? "..." : ""));
    return new RuntimeInputError(`${this.where}: metadata ${PREFIX}${key}: expected ${expected}, found ${shown}`);
  }

  json(key) {
    const text = this.ours.get(key);
    if (Array.from(text).length > MAX_VALUE_CHARS) throw this.fail(key, `at most ${MAX_VALUE_CHARS} characters`);
    return parseIntegerJson(text);
  }

  count(key, low, high) {
    const text = this.ours.get(key);
    if (text === undefined) return null;
    if (!/^[0-9]+$/.test(text) || BigInt(text) < BigInt(low) || BigInt(text) > BigInt(high)) {
      throw this.fail(key, `an integer from ${low} to ${high}`);
    }
    return Number(text);
  }

  /** A JSON list of positive integers (null allowed where `symbolic`), or the v1 `C,H,W`. */
  shape(key, ranks, symbolic) {
    const text = pyStrip(this.ours.get(key));
    const value = text.startsWith("[") ? this.json(key) : csvInts(text);
    const ok = Array.isArray(value) && ranks.includes(value.length) &&
      value.every((v) => (v === null && symbolic) || (isInt(v) && v >= 1 && v <= MAX_ELEMENTS));
    if (!ok || value.reduce((a, v) => a * (v ?? 1), 1) > MAX_ELEMENTS) {
      throw this.fail(key, `a list of ${ranks.join(" or ")} positive integers${symbolic ? " (null for symbolic)" : ""} ` +
        `of at most ${MAX_ELEMENTS} values`);
    }
    return value;
  }

  /** @returns {GraphMetadata} */
  read() {
    const o = this.ours;
    const role = o.get("role");
    if (!ROLES.includes(role)) throw this.fail("role", `one of ${ROLES.join(", ")}`);
    const latent = o.has("latent_shape")
      ? this.shape("latent_shape", [1, 3], true)
      : [this.count("latent_dim", 1, MAX_ELEMENTS)]; // v1 graphs: a flat latent, its size in latent_dim
    const image = pyStrip(o.get("image_shape")) === "null" ? null : this.shape("image_shape", [3], false);
    const likelihood = o.get("likelihood") ?? "bernoulli";
    if (!LIKELIHOODS.includes(likelihood)) throw this.fail("likelihood", `one of ${LIKELIHOODS.join(", ")}`);
    const stride = this.count("stride", 1, MAX_STRIDE);
    let exportSize = null;
    if (o.has("export_size")) {
      const v = this.json("export_size");
      const s = stride ?? 1;
      if (!(Array.isArray(v) && v.length === 2 && v.every((d) => isInt(d) && d >= 1) &&
          v[0] * v[1] <= MAX_ELEMENTS && v.every((d) => d % s === 0))) {
        throw this.fail("export_size", `[height, width], positive multiples of the stride ${s}`);
      }
      exportSize = [v[0], v[1]];
    }
    if (image === null && (latent.length !== 3 || latent[1] !== null || latent[2] !== null)) {
      throw this.fail("latent_shape", "[c, null, null] for a graph with a symbolic image size");
    }
    const numClasses = this.count("num_classes", 2, MAX_CLASSES) ?? 0;
    let classNames = [];
    if (numClasses && o.has("class_names")) {
      const v = this.json("class_names");
      if (Array.isArray(v) && v.length === numClasses && v.every((n) => typeof n === "string")) classNames = v;
    }
    /** @type {Record<string, string>} */
    const extra = {};
    for (const [k, v] of o) if (!KNOWN.includes(k)) extra[k] = v;
    return {
      role, latentShape: latent, imageShape: image, likelihood, variant: o.get("variant") ?? "fp32", stride,
      exportSize, numClasses, classNames, version: o.get("version") ?? "",
      checkpointSha256: o.get("checkpoint_sha256") ?? "", source: o.get("source") ?? "", opset: o.get("opset") ?? "",
      exporter: o.get("exporter") ?? "", extra,
    };
  }
}

function csvInts(text) {
  const parts = text.split(",").map(pyStrip);
  return parts.every((p) => /^[0-9]+$/.test(p)) ? parts.map(Number) : INVALID;
}

/**
 * Read a graph's metadata_props (all of them; the `vae_export.` keys are picked here).
 * `where` (the file or URL) prefixes every error. Throws RuntimeInputError naming the key and
 * the rule, or saying the graph is not one of ours.
 * @param {Record<string, string>} props
 * @param {string} where
 * @returns {GraphMetadata}
 */
export function readMetadata(props, where) {
  const ours = new Map();
  for (const [k, v] of Object.entries(props)) if (k.startsWith(PREFIX)) ours.set(k.slice(PREFIX.length), v);
  if (!ours.has("role") || !(ours.has("latent_shape") || ours.has("latent_dim")) || !ours.has("image_shape")) {
    throw new RuntimeInputError(`${where}: not a vae-export graph (no ${PREFIX}role, ${PREFIX}latent_shape and ` +
      `${PREFIX}image_shape metadata); export it with vae-export`);
  }
  return new Reader(ours, where).read();
}
