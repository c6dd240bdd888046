// vae-export-runtime 0.1.0 (the npm package in js/ of the vae-export repository), as one ES module
// for pages without a bundler. GENERATED from js/src by js/scripts/bundle.mjs (npm run bundle): do not
// edit; tests check it is js/src's. Node apps and bundlers use the package itself.

// ---- src/errors.js ----
const __errors = (() => {
// The errors apps see, as in the Python runtime (vae_export_runtime/errors.py): a
// VAEExportError is something the user can fix (a bad file, a failed run); a RuntimeInputError
// is an argument or input that does not match the graph's contract, its message naming the
// rule in the same words as Python's.

class VAEExportError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "VAEExportError";
  }
}

class RuntimeInputError extends VAEExportError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "RuntimeInputError";
  }
}
return { VAEExportError, RuntimeInputError };
})();
// ---- src/limits.js ----
const __limits = (() => {
// Stated bounds on every count and size (vae_export_runtime/limits.py): the same numbers in
// every host, so that a call refused in Python is refused here with the same message.

const MAX_BATCH = 65536; // images or latents per call
const MAX_STEPS = 4096; // interpolation points
const MAX_SAMPLES = 1024; // anomaly score draws per image
const MAX_SEED = 2n ** 63n - 1n; // the portable generator's key is 64 bits, seeds below 2^63
const MAX_ELEMENTS = 2 ** 28; // values in one image, latent or tensor
const MAX_TILE = 2 ** 16; // latent cells per tile side
const MAX_TEMPERATURE = 10; // the prior's scale for sampling
const MAX_CLASSES = 1000; // codec: num_classes
const MAX_STRIDE = 1024; // codec: stride
const MAX_VALUE_CHARS = 2 ** 16; // codec: one metadata value
return { MAX_BATCH, MAX_STEPS, MAX_SAMPLES, MAX_SEED, MAX_ELEMENTS, MAX_TILE, MAX_TEMPERATURE, MAX_CLASSES, MAX_STRIDE, MAX_VALUE_CHARS };
})();
// ---- src/pyformat.js ----
const __pyformat = (() => {
// Values written into error messages the way Python writes them (repr, `:g`, json.dumps), so
// that a RuntimeInputError reads the same in JavaScript as in the Python runtime. JavaScript
// has one number type: an integral Number is shown as a Python int, any other as a float.

/** Python's type name for a value, as `type(v).__name__` would say it. */
function typeName(value) {
  if (value === null || value === undefined) return "NoneType";
  if (typeof value === "boolean") return "bool";
  if (typeof value === "bigint") return "int";
  if (typeof value === "number") return Number.isInteger(value) ? "int" : "float";
  if (typeof value === "string") return "str";
  if (Array.isArray(value)) return "list";
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  if (typeof value === "function") return "function";
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null ? "dict" : value.constructor?.name ?? "object";
}

/** The shortest round-trip digits of a finite non-zero |x|: [digits, exponent of the first]. */
function shortest(x) {
  const [mantissa, exp] = Math.abs(x).toExponential().split("e");
  return [mantissa.replace(".", ""), Number(exp)];
}

/** Python's repr of a float: shortest digits, scientific below 1e-4 and from 1e16 on. */
function pyFloat(x) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [digits, exp] = shortest(x);
  if (exp < -4 || exp >= 16) {
    const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${mantissa}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  return sign + fixed(digits, exp, true);
}

/** digits d0 d1 ... with d0 at 10^exp, in positional notation (".0" added when asked). */
function fixed(digits, exp, pointZero) {
  if (exp < 0) return `0.${"0".repeat(-exp - 1)}${digits}`;
  if (digits.length <= exp + 1) return digits + "0".repeat(exp + 1 - digits.length) + (pointZero ? ".0" : "");
  return `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
}

/** Python's `format(x, ".{precision}g")` (and `:g`, precision 6). */
function pyFormatG(x, precision = 6) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const sign = x < 0 ? "-" : "";
  const [mantissa, expText] = Math.abs(x).toExponential(precision - 1).split("e");
  const exp = Number(expText);
  const digits = mantissa.replace(".", "").replace(/0+$/, "") || "0";
  if (exp < -4 || exp >= precision) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  return sign + fixed(digits, exp, false);
}

/** Python's repr of a str: single quotes unless the text has one and no double quote. */
function pyStr(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = "";
  for (const ch of s) {
    const code = ch.codePointAt(0);
    if (ch === "\\" || ch === quote) out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += "\\x" + code.toString(16).padStart(2, "0");
    else out += ch;
  }
  return quote + out + quote;
}

/** Python's repr of a value: numbers, strings, booleans, None, lists (arrays, typed arrays). */
function pyRepr(value) {
  if (value === null || value === undefined) return "None";
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "bigint") return String(value);
  if (typeof value === "number") {
    return Number.isInteger(value) && Math.abs(value) < 1e16 ? String(value) : pyFloat(value);
  }
  if (typeof value === "string") return pyStr(value);
  if (Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView))) {
    return `[${Array.from(value, pyRepr).join(", ")}]`;
  }
  return `<${typeName(value)} object>`;
}

/** A list of integers as Python prints `list(shape)`: [2, 31]. */
function pyList(values) {
  return `[${Array.from(values).join(", ")}]`;
}

/** format_shape: a shape with "?" for a symbolic (null) dimension, [4, ?, ?]. */
function formatShape(shape) {
  return `[${Array.from(shape, (d) => (d === null ? "?" : String(d))).join(", ")}]`;
}

/** Python's json.dumps of a str (ensure_ascii: every non-ASCII UTF-16 unit as \uXXXX). */
function pyJsonString(s) {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) =>
    c === "\u007f" ? c : "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}
return { typeName, pyFloat, pyFormatG, pyRepr, pyList, formatShape, pyJsonString };
})();
// ---- src/checks.js ----
const __checks = (() => {
// Checks of the runtime's arguments: counts, temperatures, arrays, class labels and rows, with
// the Python runtime's messages (vae_export_runtime/checks.py). Every bad argument is one
// RuntimeInputError naming it, what was expected and what was found.
//
// Arrays arrive as `{ data, dims }` (an onnxruntime Tensor is one), typed arrays, nested
// arrays of numbers, or a single number; `asTensor` makes them one form, with the numpy dtype
// Python would have seen (a typed array's own; for plain numbers int64 when all are integral,
// else float64), since the messages name it.

const { RuntimeInputError } = __errors;
const { MAX_TEMPERATURE } = __limits;
const { pyFormatG, pyList, pyRepr, typeName } = __pyformat;

// A row of y may mix classes; it must still be a distribution (the Python runtime's tolerance).
const ROW_SUM_TOLERANCE = 1e-3;

const DTYPES = new Map([
  [Float32Array, "float32"], [Float64Array, "float64"], [Int8Array, "int8"], [Uint8Array, "uint8"],
  [Uint8ClampedArray, "uint8"], [Int16Array, "int16"], [Uint16Array, "uint16"], [Int32Array, "int32"],
  [Uint32Array, "uint32"], [BigInt64Array, "int64"], [BigUint64Array, "uint64"],
]);
if (typeof globalThis.Float16Array === "function") DTYPES.set(globalThis.Float16Array, "float16");

/**
 * An array in one form: values (Numbers) in row-major order, dims, and numpy's dtype name.
 * @typedef {{ data: ArrayLike<number>, dims: number[], dtype: string }} Tensorish
 */

const isInteger = (dtype) => /^u?int/.test(dtype);
const isReal = (dtype) => isInteger(dtype) || dtype.startsWith("float");

/** numpy's dtype for a list of plain JavaScript values. */
function listDtype(values) {
  if (values.every((v) => typeof v === "boolean")) return values.length ? "bool" : "float64";
  if (values.every((v) => typeof v === "bigint")) return "int64";
  if (values.every((v) => typeof v === "number" || typeof v === "bigint" || typeof v === "boolean")) {
    return values.every((v) => typeof v !== "number" || Number.isInteger(v)) ? "int64" : "float64";
  }
  return values.every((v) => typeof v === "string") ? "str" : "object";
}

/** Rectangular nested arrays -> [flat values, dims]; null when ragged. */
function flatten(value) {
  if (!Array.isArray(value) && !(ArrayBuffer.isView(value) && !(value instanceof DataView))) return [[value], []];
  const items = Array.from(value);
  if (!items.length) return [[], [0]];
  const parts = items.map(flatten);
  if (parts.some((p) => p === null)) return null;
  const inner = parts[0][1];
  if (parts.some((p) => p[1].length !== inner.length || p[1].some((d, k) => d !== inner[k]))) return null;
  return [parts.flatMap((p) => p[0]), [items.length, ...inner]];
}

/**
 * Python's np.asarray for the runtime's inputs (as_array): one array form, or a
 * RuntimeInputError saying what the value was.
 * @param {unknown} value
 * @param {string} what the argument's name
 * @returns {Tensorish}
 */
function asTensor(value, what) {
  if (value !== null && typeof value === "object" && "data" in value && "dims" in value) {
    const { data, dims } = /** @type {{ data: unknown, dims: unknown }} */ (value);
    if (!Array.isArray(dims) && !ArrayBuffer.isView(dims)) {
      throw new RuntimeInputError(`${what}: expected dims, a list of sizes, found ${typeName(dims)}`);
    }
    const shape = Array.from(/** @type {ArrayLike<number>} */ (dims), Number);
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new RuntimeInputError(`${what}: expected dims of non-negative integers, found ${pyRepr(shape)}`);
    }
    let dtype;
    let values;
    if (ArrayBuffer.isView(data) && DTYPES.has(data.constructor)) {
      dtype = DTYPES.get(data.constructor);
      values = data instanceof BigInt64Array || data instanceof BigUint64Array ? Array.from(data, Number) : data;
    } else if (Array.isArray(data)) {
      dtype = listDtype(data);
      values = data;
    } else {
      throw new RuntimeInputError(`${what}: expected data as a typed array or an array of numbers, found ${typeName(data)}`);
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (values.length !== count) {
      throw new RuntimeInputError(`${what}: dims ${pyList(shape)} hold ${count} values, found ${values.length}`);
    }
    return { data: values, dims: shape, dtype };
  }
  if (ArrayBuffer.isView(value) && DTYPES.has(value.constructor)) {
    const dtype = DTYPES.get(value.constructor);
    const data = value instanceof BigInt64Array || value instanceof BigUint64Array ? Array.from(value, Number) : value;
    return { data: /** @type {ArrayLike<number>} */ (data), dims: [value.length], dtype };
  }
  if (Array.isArray(value) || ["number", "bigint", "boolean"].includes(typeof value)) {
    const flat = flatten(value);
    if (flat === null) throw new RuntimeInputError(`${what}: expected an array, found list (ragged nested lists)`);
    const [values, dims] = flat;
    const dtype = listDtype(values);
    if (dtype === "object" || dtype === "str") {
      // numpy makes text an array of strings (a dtype the checks refuse by name); anything else objects
      if (dtype === "str") return { data: values, dims, dtype };
      throw new RuntimeInputError(`${what}: expected a numeric array, found ${typeName(value)} of objects`);
    }
    return { data: values.map(Number), dims, dtype };
  }
  throw new RuntimeInputError(`${what}: expected an array, found ${typeName(value)}`);
}

/**
 * An integer argument in [low, high] (a Number or a BigInt; not a boolean, not a fraction).
 * @param {string} name @param {unknown} value @param {number} low @param {number} high
 * @returns {number}
 */
function checkCount(name, value, low, high) {
  const integral = (typeof value === "number" && Number.isInteger(value)) || typeof value === "bigint";
  if (!integral) {
    throw new RuntimeInputError(`${name}: expected an integer from ${low} to ${high}, found ${typeName(value)} ${pyRepr(value)}`);
  }
  if (!(value >= low && value <= high)) {
    throw new RuntimeInputError(`${name}: expected an integer from ${low} to ${high}, found ${value}`);
  }
  return Number(value);
}

/**
 * The prior's scale for sampling, z ~ N(0, T^2 I): a finite number in (0, MAX_TEMPERATURE].
 * @param {unknown} value
 * @returns {number}
 */
function checkTemperature(value) {
  if (typeof value !== "number" || !(value > 0 && value <= MAX_TEMPERATURE)) {
    throw new RuntimeInputError(`temperature: expected a number in (0, ${pyFormatG(MAX_TEMPERATURE)}], found ${pyRepr(value)}`);
  }
  return value;
}

/**
 * One-hot rows [n, K] from one class index (every row) or a sequence of n of them.
 * @param {unknown} labels @param {number} numClasses @param {number} n @param {string} [what]
 * @returns {Float32Array}
 */
function labelRows(labels, numClasses, n, what = "labels") {
  const array = asTensor(labels, what);
  let values = Array.from(array.data);
  let dims = array.dims;
  if (dims.length === 0) {
    values = new Array(n).fill(values[0]);
    dims = [n];
  }
  if (dims.length !== 1 || dims[0] !== n) {
    throw new RuntimeInputError(`${what}: expected one class index or ${n} of them, found shape ${pyList(dims)}`);
  }
  const integer = isInteger(array.dtype);
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) {
    if (v < low) low = v;
    if (v > high) high = v;
  }
  if (!integer || (values.length && (low < 0 || high >= numClasses))) {
    const found = integer ? `${low}..${high}` : array.dtype;
    throw new RuntimeInputError(`${what}: expected class indices 0..${numClasses - 1}, found ${found}`);
  }
  const rows = new Float32Array(n * numClasses);
  values.forEach((c, i) => { rows[i * numClasses + c] = 1; });
  return rows;
}

/**
 * y as given: [n, K] rows of class weights, each a distribution (>= 0, summing to 1).
 * @param {unknown} y @param {number} numClasses @param {number} n @param {string} [what]
 * @returns {Float32Array}
 */
function checkRows(y, numClasses, n, what = "y") {
  const array = asTensor(y, what);
  if (array.dims.length !== 2 || array.dims[0] !== n || array.dims[1] !== numClasses) {
    throw new RuntimeInputError(`${what}: expected shape [${n}, ${numClasses}] (one row of ${numClasses} class ` +
      `weights per item), found ${pyList(array.dims)}`);
  }
  if (!isReal(array.dtype)) {
    throw new RuntimeInputError(`${what}: expected a real-valued array, found dtype ${array.dtype}`);
  }
  const rows = Float32Array.from(array.data);
  if (!rows.every((v) => Number.isFinite(v) && v >= 0)) {
    throw new RuntimeInputError(`${what}: expected finite class weights >= 0`);
  }
  let worst = 0;
  let worstSum = 1;
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let k = 0; k < numClasses; k++) sum += rows[i * numClasses + k];
    sum = Math.fround(sum); // numpy sums float32 rows in float32
    if (Math.abs(sum - 1) > Math.abs(worstSum - 1)) [worst, worstSum] = [i, sum];
  }
  if (Math.abs(worstSum - 1) > ROW_SUM_TOLERANCE) {
    throw new RuntimeInputError(`${what}: each row must sum to 1 (a one-hot row or a mix of classes), ` +
      `row ${worst} sums to ${pyFormatG(worstSum, 4)}`);
  }
  return rows;
}

/**
 * The y rows of a call: from `labels` (class indices) or `y` (rows), exactly one of them for a
 * conditional graph (numClasses > 0), neither for an unconditional one (null then).
 * @param {unknown} y @param {unknown} labels @param {number} numClasses @param {number} n
 * @returns {Float32Array | null}
 */
function condition(y, labels, numClasses, n) {
  const hasY = y !== undefined && y !== null;
  const hasLabels = labels !== undefined && labels !== null;
  if (!numClasses) {
    if (hasY || hasLabels) {
      throw new RuntimeInputError(`${hasY ? "y" : "labels"}: this graph is not conditional (it takes no class)`);
    }
    return null;
  }
  if (hasY === hasLabels) {
    throw new RuntimeInputError(`labels: this graph is conditional on ${numClasses} classes; pass labels= ` +
      "(class indices) or y= (rows of class weights), one of them");
  }
  return hasLabels ? labelRows(labels, numClasses, n) : checkRows(y, numClasses, n);
}
return { ROW_SUM_TOLERANCE, asTensor, checkCount, checkTemperature, labelRows, checkRows, condition };
})();
// ---- src/engine.js ----
const __engine = (() => {
// Where graphs come from and what runs them: the bytes of a model (a path in Node, a URL or
// bytes anywhere) and the onnxruntime module (onnxruntime-node in Node, onnxruntime-web in
// browsers, or the one the caller passes). Module names are computed, not literal, so that a
// bundler building for the web never tries to pull in Node's modules or onnxruntime-node.

const { RuntimeInputError, VAEExportError } = __errors;
const { typeName } = __pyformat;

const ORT_VERSION = "1.30.0"; // what package.json pins and the tests run on

const isNode = typeof process !== "undefined" && typeof process.versions?.node === "string";

/** @type {Promise<any> | null} */
let defaultOrt = null;

/**
 * The onnxruntime module to use: `given` when passed; else a page's global `ort` (the
 * onnxruntime-web script tag); else onnxruntime-node in Node, onnxruntime-web elsewhere.
 * @param {any} [given]
 */
async function resolveOrt(given) {
  if (given) return given;
  if (globalThis.ort?.InferenceSession) return globalThis.ort;
  const name = isNode ? "onnxruntime-node" : "onnxruntime-web";
  defaultOrt ??= import(/* webpackIgnore: true */ /* @vite-ignore */ name).catch(() => {
    defaultOrt = null;
    throw new VAEExportError(`vae-export-runtime needs ${name} (npm install ${name}@${ORT_VERSION}), ` +
      "or pass the onnxruntime module as load(src, { ort })");
  });
  return defaultOrt;
}

/** The first line of an error's message (onnxruntime's can run to pages). */
function firstLine(exc) {
  const text = String(exc?.message ?? exc).trim();
  return text.split("\n")[0] || (exc?.name ?? "Error");
}

/**
 * The model's bytes and how messages name it.
 * @param {string | URL | Uint8Array | ArrayBuffer} src a path (Node), a URL, or the bytes
 * @param {string} [name] how messages name bytes (default "<bytes>")
 * @returns {Promise<{ bytes: Uint8Array, where: string }>}
 */
async function readSource(src, name) {
  if (src instanceof Uint8Array) return { bytes: src, where: name ?? "<bytes>" };
  if (src instanceof ArrayBuffer) return { bytes: new Uint8Array(src), where: name ?? "<bytes>" };
  const isUrlText = typeof src === "string" && /^[a-z][a-z0-9+.-]*:/i.test(src) && !/^[a-z]:[\\/]/i.test(src);
  if (src instanceof URL || isUrlText) {
    const url = new URL(String(src));
    if (url.protocol === "file:" && isNode) {
      const { fileURLToPath } = await import(/* webpackIgnore: true */ /* @vite-ignore */ "node:" + "url");
      return readFile(fileURLToPath(url));
    }
    return fetchBytes(url.href);
  }
  if (typeof src === "string") return isNode ? readFile(src) : fetchBytes(src);
  throw new RuntimeInputError(`path: expected a file path, a URL or bytes, found ${typeName(src)}`);
}

async function readFile(path) {
  const fs = await import(/* webpackIgnore: true */ /* @vite-ignore */ "node:" + "fs/promises");
  try {
    return { bytes: new Uint8Array(await fs.readFile(path)), where: path };
  } catch (exc) {
    if (exc?.code === "ENOENT" || exc?.code === "EISDIR" || exc?.code === "ENOTDIR") {
      throw new RuntimeInputError(`${path}: file not found`);
    }
    throw new VAEExportError(`${path}: cannot read it (${exc?.code ?? firstLine(exc)})`);
  }
}

async function fetchBytes(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (exc) {
    throw new VAEExportError(`${url}: cannot fetch it (${firstLine(exc)})`);
  }
  if (response.status === 404) throw new RuntimeInputError(`${url}: file not found`);
  if (!response.ok) throw new VAEExportError(`${url}: cannot fetch it (HTTP ${response.status})`);
  return { bytes: new Uint8Array(await response.arrayBuffer()), where: url };
}
return { ORT_VERSION, resolveOrt, firstLine, readSource };
})();
// ---- src/metadata.js ----
const __metadata = (() => {
// The graph metadata codec, reading side: the `vae_export.*` keys of a graph's metadata_props
// (docs/contract.md, "Metadata"), with the same rules and messages as the Python runtime's
// vae_export_runtime/codec.py. Structural keys (role, shapes, stride, export size, classes,
// likelihood) are validated strictly, and a graph without them is not one of ours;
// informational keys are kept as strings; a malformed class_names reads as no names.

const { RuntimeInputError } = __errors;
const { MAX_CLASSES, MAX_ELEMENTS, MAX_STRIDE, MAX_VALUE_CHARS } = __limits;
const { pyJsonString } = __pyformat;

const PREFIX = "vae_export.";
const ROLES = ["encoder", "decoder", "classifier"];
const LIKELIHOODS = ["bernoulli", "gaussian"];
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
const pyStrip = (text) => text.replace(SURROUNDING_SPACE, "");

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
function readMetadata(props, where) {
  const ours = new Map();
  for (const [k, v] of Object.entries(props)) if (k.startsWith(PREFIX)) ours.set(k.slice(PREFIX.length), v);
  if (!ours.has("role") || !(ours.has("latent_shape") || ours.has("latent_dim")) || !ours.has("image_shape")) {
    throw new RuntimeInputError(`${where}: not a vae-export graph (no ${PREFIX}role, ${PREFIX}latent_shape and ` +
      `${PREFIX}image_shape metadata); export it with vae-export`);
  }
  return new Reader(ours, where).read();
}
return { PREFIX, ROLES, LIKELIHOODS, pyStrip, readMetadata };
})();
// ---- src/onnxproto.js ----
const __onnxproto = (() => {
// Reads what the runtime needs from an .onnx file's protobuf bytes: the model's
// metadata_props and the graph's input/output signatures. onnxruntime's JavaScript API does not
// expose a model's metadata_props (Python's get_modelmeta().custom_metadata_map), so the
// package reads them itself. A dozen lines of protobuf wire format suffice: the walk visits the
// top-level fields and the graph's inputs and outputs, and skips everything else (weights
// included) by its length, so a 300 MB decoder costs microseconds.

const { RuntimeInputError } = __errors;

// onnx.proto field numbers
const MODEL_GRAPH = 7;
const MODEL_METADATA = 14;
const GRAPH_INPUT = 11;
const GRAPH_OUTPUT = 12;
const VALUE_NAME = 1;
const VALUE_TYPE = 2;
const TYPE_TENSOR = 1;
const TENSOR_ELEM_TYPE = 1;
const TENSOR_SHAPE = 2;
const SHAPE_DIM = 1;
const DIM_VALUE = 1;
const DIM_PARAM = 2;
const ENTRY_KEY = 1;
const ENTRY_VALUE = 2;

// TensorProto.DataType as ONNX Runtime names it in a value's type, "tensor(<name>)".
const ELEM_TYPES = ["undefined", "float", "uint8", "int8", "uint16", "int16", "int32", "int64", "string", "bool",
  "float16", "double", "uint32", "uint64", "complex64", "complex128", "bfloat16", "float8e4m3fn", "float8e4m3fnuz",
  "float8e5m2", "float8e5m2fnuz", "uint4", "int4", "float4e2m1"];

const utf8 = new TextDecoder("utf-8");

class Malformed extends Error {}

/**
 * The fields of one protobuf message: [fieldNumber, wireType, value] where value is a Number
 * for varints (exact below 2^53; larger ones, never a size here, come out rounded) and a
 * Uint8Array view for length-delimited fields. Fixed-width fields are skipped.
 * @param {Uint8Array} buf
 */
function* fields(buf) {
  let pos = 0;
  const varint = () => {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      if (pos >= buf.length || scale > 2 ** 63) throw new Malformed("truncated varint");
      const byte = buf[pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
    }
  };
  while (pos < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) {
      yield [field, wire, varint()];
    } else if (wire === 2) {
      const length = varint();
      if (pos + length > buf.length) throw new Malformed("truncated field");
      yield [field, wire, buf.subarray(pos, pos + length)];
      pos += length;
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4;
      if (pos > buf.length) throw new Malformed("truncated field");
    } else {
      throw new Malformed(`wire type ${wire}`);
    }
  }
}

/**
 * A graph value's signature: name, ONNX Runtime's type string, and dims (a Number, the
 * dim_param name, or null for an unknown dimension), or null dims for an unknown rank.
 * @typedef {{ name: string, type: string, dims: (number | string | null)[] | null }} ValueSignature
 * @param {Uint8Array} buf
 * @returns {ValueSignature}
 */
function valueInfo(buf) {
  let name = "";
  let type = "unknown";
  /** @type {(number | string | null)[] | null} */
  let dims = null;
  for (const [field, wire, value] of fields(buf)) {
    if (field === VALUE_NAME && wire === 2) name = utf8.decode(value);
    if (field !== VALUE_TYPE || wire !== 2) continue;
    for (const [tf, tw, tensor] of fields(value)) {
      if (tf !== TYPE_TENSOR || tw !== 2) continue;
      type = "tensor(undefined)";
      for (const [ef, ew, ev] of fields(tensor)) {
        if (ef === TENSOR_ELEM_TYPE && ew === 0) type = `tensor(${ELEM_TYPES[ev] ?? ev})`;
        if (ef !== TENSOR_SHAPE || ew !== 2) continue;
        dims = [];
        for (const [sf, sw, dim] of fields(ev)) {
          if (sf !== SHAPE_DIM || sw !== 2) continue;
          let d = null;
          for (const [df, dw, dv] of fields(dim)) {
            if (df === DIM_VALUE && dw === 0) d = dv < 2 ** 53 ? dv : null; // a negative int64 is no size
            if (df === DIM_PARAM && dw === 2) d = utf8.decode(dv) || null;
          }
          dims.push(d);
        }
      }
    }
  }
  return { name, type, dims };
}

/**
 * metadata_props and the graph's declared inputs and outputs of an ONNX model.
 * @param {Uint8Array} bytes
 * @param {string} where the file or URL, for the error
 * @returns {{ metadata: Record<string, string>, inputs: ValueSignature[], outputs: ValueSignature[] }}
 */
function readModel(bytes, where) {
  if (utf8.decode(bytes.subarray(4, 8)) === "ORTM") {
    // ONNX Runtime's own format: a flatbuffer whose metadata this reader cannot see.
    throw new RuntimeInputError(`${where}: an ORT-format model (.ort); this package reads .onnx graphs`);
  }
  /** @type {Record<string, string>} */
  const metadata = {};
  const inputs = [];
  const outputs = [];
  try {
    for (const [field, wire, value] of fields(bytes)) {
      if (wire !== 2) continue;
      if (field === MODEL_METADATA) {
        let key = "";
        let text = "";
        for (const [ef, ew, ev] of fields(value)) {
          if (ef === ENTRY_KEY && ew === 2) key = utf8.decode(ev);
          if (ef === ENTRY_VALUE && ew === 2) text = utf8.decode(ev);
        }
        metadata[key] = text;
      } else if (field === MODEL_GRAPH) {
        for (const [gf, gw, gv] of fields(value)) {
          if (gw === 2 && gf === GRAPH_INPUT) inputs.push(valueInfo(gv));
          if (gw === 2 && gf === GRAPH_OUTPUT) outputs.push(valueInfo(gv));
        }
      }
    }
  } catch (exc) {
    if (!(exc instanceof Malformed)) throw exc;
    throw new RuntimeInputError(`${where}: not an ONNX model (${exc.message})`);
  }
  return { metadata, inputs, outputs };
}
return { readModel };
})();
// ---- src/sampling.js ----
const __sampling = (() => {
// The portable seeded normal generator, "vae-export normal v1" (docs/contract.md, "Portable
// seeded sampling"): the same float32 latents, bit for bit, as the Python runtime's
// vae_export_runtime/sampling.py for the same seed.
//
// 1. seed s in [0, 2^63 - 1] -> key (k0, k1) = (s mod 2^32, floor(s / 2^32));
// 2. block i -> Threefry-2x32, 20 rounds (Salmon et al. 2011, Random123; JAX's generator),
//    counter (i mod 2^32, floor(i / 2^32)) -> words (w0, w1);
// 3. U_i = ((w0 >>> 5) * 2^26 + (w1 >>> 6)) / 2^53, exact;
// 4. Marsaglia's polar method on blocks (2j, 2j + 1);
// 5. ln by `ln` below, never Math.log (whose last bit differs between engines and libms);
// 6. the first n * prod(L) normals rounded to float32, row-major; times float32(temperature).
//
// JavaScript evaluates every + - * / and Math.sqrt in binary64, rounded to nearest, and never
// fuses a multiply with an add: exactly the arithmetic the specification prescribes.

const { RuntimeInputError } = __errors;
const { MAX_SEED } = __limits;
const { pyRepr, typeName } = __pyformat;

const GENERATOR = "vae-export normal v1";

const ROTATIONS = [13, 15, 26, 6, 17, 29, 16, 24]; // Random123's R_32x2
const PARITY = 0x1bd11bda;
const TWO32 = 4294967296;
const SQRT_HALF = 0.7071067811865476;
const LN2 = 0.6931471805599453;
// 1/(2k+1) for k = 11 (the start, 1/23) down to 0, each a correctly rounded division.
const ODD_RECIPROCALS = Array.from({ length: 12 }, (_, i) => 1 / (2 * (11 - i) + 1));

const words = new Uint32Array(2); // threefry's output, reused: no array per block in the hot loop

/** Threefry-2x32-20 of counter (c0, c1) under key (k0, k1) into `words`. */
function threefryInto(k0, k1, c0, c1) {
  const k2 = (k0 ^ k1 ^ PARITY) >>> 0;
  const ks = [k0 >>> 0, k1 >>> 0, k2];
  let x0 = (c0 + ks[0]) >>> 0;
  let x1 = (c1 + ks[1]) >>> 0;
  for (let r = 0; r < 20; r++) {
    const rot = ROTATIONS[r % 8];
    x0 = (x0 + x1) >>> 0;
    x1 = ((x1 << rot) | (x1 >>> (32 - rot))) >>> 0;
    x1 = (x1 ^ x0) >>> 0;
    if (r % 4 === 3) {
      const g = (r >> 2) + 1;
      x0 = (x0 + ks[g % 3]) >>> 0;
      x1 = (x1 + ks[(g + 1) % 3] + g) >>> 0;
    }
  }
  words[0] = x0;
  words[1] = x1;
}

/**
 * Threefry-2x32 with 20 rounds: the two output words of counter (c0, c1) under key (k0, k1),
 * all unsigned 32-bit integers. `>>> 0` keeps every sum and rotation in 0 .. 2^32 - 1 (sums
 * of two words are below 2^33, exact in a Number).
 * @param {number} k0 @param {number} k1 @param {number} c0 @param {number} c1
 * @returns {[number, number]}
 */
function threefry2x32(k0, k1, c0, c1) {
  threefryInto(k0, k1, c0, c1);
  return [words[0], words[1]];
}

const bits = new DataView(new ArrayBuffer(8));

/**
 * frexp from the IEEE-754 bits: x = m * 2^e with m in [0.5, 1), exactly (subnormals are
 * scaled by 2^54 first, which is exact).
 * @param {number} x positive and finite
 * @returns {[number, number]}
 */
function frexp(x) {
  bits.setFloat64(0, x);
  let field = (bits.getUint32(0) >>> 20) & 0x7ff;
  let shift = 0;
  if (field === 0) {
    bits.setFloat64(0, x * 2 ** 54);
    field = (bits.getUint32(0) >>> 20) & 0x7ff;
    shift = 54;
  }
  bits.setUint32(0, (bits.getUint32(0) & 0x800fffff) | (1022 << 20));
  return [bits.getFloat64(0), field - 1022 - shift];
}

/**
 * The natural logarithm of a positive finite x by the specification's algorithm (step 5): the
 * same bits in every host. (m, e) = frexp(x); m < sqrt(1/2) -> (2m, e - 1);
 * r = (m - 1)/(m + 1); ln m = 2r (1 + r^2/3 + ... + r^22/23) by Horner from 1/23;
 * ln x = ln m + e ln 2.
 * @param {number} x
 */
function ln(x) {
  let [m, e] = frexp(x);
  if (m < SQRT_HALF) {
    m = m * 2;
    e = e - 1;
  }
  const r = (m - 1) / (m + 1);
  const r2 = r * r;
  let p = ODD_RECIPROCALS[0];
  for (let k = 1; k < ODD_RECIPROCALS.length; k++) p = p * r2 + ODD_RECIPROCALS[k];
  return 2 * r * p + e * LN2;
}

/**
 * Step 1: the key of a seed, a safe-integer Number or a BigInt in [0, 2^63 - 1]. The message
 * is check_seed's (Python) where Python has the same case.
 * @param {number | bigint} seed
 * @returns {[number, number]}
 */
function seedKey(seed) {
  if (typeof seed === "number") {
    if (!Number.isInteger(seed)) {
      throw new RuntimeInputError(`seed: expected an integer from 0 to ${MAX_SEED}, found ${typeName(seed)} ${pyRepr(seed)}`);
    }
    if (!Number.isSafeInteger(seed) && seed > 0) {
      throw new RuntimeInputError(`seed: expected an integer from 0 to ${MAX_SEED}, found ${BigInt(seed)} ` +
        "(a Number above 2^53 - 1 is not exact; pass a BigInt)");
    }
    if (seed < 0) throw new RuntimeInputError(`seed: expected an integer from 0 to ${MAX_SEED}, found ${seed}`);
    return [seed % TWO32, Math.floor(seed / TWO32)];
  }
  if (typeof seed === "bigint") {
    if (seed < 0n || seed > MAX_SEED) {
      throw new RuntimeInputError(`seed: expected an integer from 0 to ${MAX_SEED}, found ${seed}`);
    }
    return [Number(seed & 0xffffffffn), Number(seed >> 32n)];
  }
  throw new RuntimeInputError(`seed: expected an integer from 0 to ${MAX_SEED}, found ${typeName(seed)} ${pyRepr(seed)}`);
}

/**
 * A fresh seed from the platform's cryptographic generator (Python: os.urandom), for calls
 * without one: then the same generator.
 * @returns {Promise<bigint>}
 */
async function freshSeed() {
  const crypto = globalThis.crypto ?? (await import(/* webpackIgnore: true */ "node:crypto")).webcrypto;
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (BigInt(words[1] & 0x7fffffff) << 32n) | BigInt(words[0]);
}

/**
 * Steps 2-3: U_i for block i, exact in binary64 (a multiple of 2^-53 in [0, 1)).
 * @param {number} k0 @param {number} k1 @param {number} i
 */
function uniform(k0, k1, i) {
  threefryInto(k0, k1, i >>> 0, Math.floor(i / TWO32));
  return ((words[0] >>> 5) * 67108864 + (words[1] >>> 6)) / 9007199254740992;
}

/**
 * Steps 1-5: the first `count` standard normals of the seed's stream, in binary64.
 * @param {number} count
 * @param {number | bigint} seed
 * @returns {Float64Array}
 */
function normals(count, seed) {
  const [k0, k1] = seedKey(seed);
  const out = new Float64Array(count);
  let have = 0;
  for (let block = 0; have < count; block += 2) {
    const u = 2 * uniform(k0, k1, block) - 1;
    const v = 2 * uniform(k0, k1, block + 1) - 1;
    const s = u * u + v * v;
    if (!(s > 0 && s < 1)) continue;
    const f = Math.sqrt((-2 * ln(s)) / s);
    out[have++] = u * f;
    if (have < count) out[have++] = v * f;
  }
  return out;
}

/**
 * z ~ N(0, I) of `shape` (n first, then the concrete latent shape), reproducible in every
 * host for a seed (steps 1-6; the temperature is `scaled`'s). Float32Array.from rounds each
 * binary64 value to nearest, ties to even, as numpy's astype(float32) does.
 * @param {readonly number[]} shape
 * @param {number | bigint} seed
 * @returns {{ data: Float32Array, dims: number[] }}
 */
function normalLatents(shape, seed) {
  const dims = Array.from(shape);
  const count = dims.reduce((a, b) => a * b, 1);
  return { data: Float32Array.from(normals(count, seed)), dims };
}

/**
 * Step 6's last part: z * float32(temperature) in float32. The product of two float32 values
 * is exact in binary64, so Float32Array's rounding of it is the float32 multiplication.
 * @param {{ data: Float32Array, dims: number[] }} z
 * @param {number} temperature
 */
function scaled(z, temperature) {
  const t = Math.fround(temperature);
  const data = new Float32Array(z.data.length);
  for (let i = 0; i < data.length; i++) data[i] = z.data[i] * t;
  return { data, dims: Array.from(z.dims) };
}
return { GENERATOR, threefry2x32, ln, seedKey, freshSeed, normals, normalLatents, scaled };
})();
// ---- src/tiling.js ----
const __tiling = (() => {
// Tiled decoding outside the graph, as the Python runtime's tiling.py (itself diffusers'
// AutoencoderKL.tiled_decode): the latent is cut into overlapping tiles of `tile` x `tile`
// cells, each decoded on its own, and neighbours are blended linearly over the overlap:
//
// - tiles start every trunc(tile * (1 - overlap)) latent cells;
// - a tile is blended with the (already blended) tile above over trunc(tile * stride * overlap)
//   rows, then with the one to its left over as many columns: weight y / extent for the new tile;
// - each tile keeps its first tile * stride - extent rows and columns.
//
// The arithmetic is numpy's on float32 arrays: a weight (a Python float) becomes a float32,
// each product and the sum are rounded to float32. Here every one of those steps is a
// Math.fround of the exact binary64 result, which rounds the same way.

const { pyFloat, pyFormatG } = __pyformat;

const DEFAULT_OVERLAP = 0.25; // diffusers' AutoencoderKL.tile_overlap_factor

/**
 * [latent step between tiles, blend extent in pixels, pixels kept per tile]. Throws RangeError
 * (the runtime turns it into a RuntimeInputError) when the tiles would not add up to the
 * untiled image size.
 * @param {number} tile @param {number} stride @param {number} [overlap]
 * @returns {[number, number, number]}
 */
function tileGeometry(tile, stride, overlap = DEFAULT_OVERLAP) {
  if (!(overlap >= 0 && overlap < 1)) {
    throw new RangeError(`overlap: expected a fraction in [0, 1), found ${pyFloat(overlap)}`);
  }
  const step = Math.trunc(tile * (1 - overlap));
  const extent = Math.trunc(tile * stride * overlap);
  const keep = tile * stride - extent;
  if (step < 1 || keep !== step * stride) {
    throw new RangeError(`tile: ${tile} latent cells with overlap ${pyFormatG(overlap)} do not tile evenly ` +
      `(step ${step} cells x stride ${stride} != ${keep} pixels kept); use a multiple of 4`);
  }
  return [step, extent, keep];
}

/**
 * A [b, c, y0:y1, x0:x1] window of a 4-D row-major array, as a new array.
 * @param {{ data: Float32Array, dims: number[] }} a
 */
function crop(a, y0, y1, x0, x1) {
  const [b, c, h, w] = a.dims;
  y1 = Math.min(y1, h);
  x1 = Math.min(x1, w);
  const out = new Float32Array(b * c * (y1 - y0) * (x1 - x0));
  let k = 0;
  for (let p = 0; p < b * c; p++) {
    for (let y = y0; y < y1; y++) {
      const row = (p * h + y) * w;
      out.set(a.data.subarray(row + x0, row + x1), k);
      k += x1 - x0;
    }
  }
  return { data: out, dims: [b, c, y1 - y0, x1 - x0] };
}

/** diffusers' blend_v, in place: the first rows of `tile` fade in over `above`'s last ones. */
function blendV(above, tile, extent) {
  const [b, c, ah] = above.dims;
  const [, , th, tw] = tile.dims;
  extent = Math.min(ah, th, extent);
  for (let y = 0; y < extent; y++) {
    const wOld = Math.fround(1 - y / extent);
    const wNew = Math.fround(y / extent);
    for (let p = 0; p < b * c; p++) {
      const src = (p * ah + ah - extent + y) * tw;
      const dst = (p * th + y) * tw;
      for (let x = 0; x < tw; x++) {
        tile.data[dst + x] = Math.fround(above.data[src + x] * wOld) + Math.fround(tile.data[dst + x] * wNew);
      }
    }
  }
}

/** diffusers' blend_h, in place: the first columns of `tile` fade in over `left`'s last ones. */
function blendH(left, tile, extent) {
  const [b, c, , lw] = left.dims;
  const [, , th, tw] = tile.dims;
  extent = Math.min(lw, tw, extent);
  for (let x = 0; x < extent; x++) {
    const wOld = Math.fround(1 - x / extent);
    const wNew = Math.fround(x / extent);
    for (let p = 0; p < b * c; p++) {
      for (let y = 0; y < th; y++) {
        const src = (p * th + y) * lw + lw - extent + x;
        const dst = (p * th + y) * tw + x;
        tile.data[dst] = Math.fround(left.data[src] * wOld) + Math.fround(tile.data[dst] * wNew);
      }
    }
  }
}

/**
 * Decode `z` [batch, c, h, w] in overlapping tiles of `tile` latent cells; `decode` maps a
 * latent tile to its image [batch, C, th * stride, tw * stride]. A latent no larger than one
 * tile is decoded whole, as diffusers does. Memory: the output, one tile, and one row of tile
 * borders.
 * @param {(part: { data: Float32Array, dims: number[] }) => Promise<{ data: Float32Array, dims: number[] }>} decode
 * @param {{ data: Float32Array, dims: number[] }} z
 * @param {number} tile @param {number} stride @param {number} [overlap]
 * @returns {Promise<{ data: Float32Array, dims: number[] }>}
 */
async function tiledDecode(decode, z, tile, stride, overlap = DEFAULT_OVERLAP) {
  const [batch, , h, w] = z.dims;
  if (h <= tile && w <= tile) return decode(z);
  const [step, extent, keep] = tileGeometry(tile, stride, overlap);
  let out = null;
  let channels = 0;
  let above = []; // the last `extent` rows of each tile of the previous row
  for (let i = 0; i < h; i += step) {
    const bottoms = [];
    let left = null;
    for (let j = 0, n = 0; j < w; j += step, n++) {
      const decoded = await decode(crop(z, i, i + tile, j, j + tile));
      const t = { data: Float32Array.from(decoded.data), dims: Array.from(decoded.dims) };
      const [, c, th, tw] = t.dims;
      if (out === null) {
        channels = c;
        out = new Float32Array(batch * c * h * stride * w * stride);
      }
      if (i > 0) blendV(above[n], t, extent);
      if (left !== null) blendH(left, t, extent);
      // What the next tiles read: kept before cropping, as diffusers blends whole tiles.
      left = crop(t, 0, th, Math.max(0, tw - extent), tw);
      bottoms.push(crop(t, Math.max(0, th - extent), th, 0, tw));
      const kept = crop(t, 0, keep, 0, keep);
      const [, , kh, kw] = kept.dims;
      const H = h * stride;
      const W = w * stride;
      for (let p = 0; p < batch * c; p++) {
        for (let y = 0; y < kh; y++) {
          const dst = (p * H + i * stride + y) * W + j * stride;
          out.set(kept.data.subarray((p * kh + y) * kw, (p * kh + y + 1) * kw), dst);
        }
      }
    }
    above = bottoms;
  }
  return { data: out, dims: [batch, channels, h * stride, w * stride] };
}
return { DEFAULT_OVERLAP, tileGeometry, tiledDecode };
})();
// ---- src/graphs.js ----
const __graphs = (() => {
// The package's graphs: VAEDecoder, VAEEncoder, VAEClassifier and VAE, mirroring the Python
// runtime's vae_export_runtime/graphs.py call for call, check for check, message for message.
// The contract (inputs, latent shape, image shape, symbolic sizes, their stride and default
// size, classes) is read from the graph's own signature and metadata (metadata.js), and a graph
// that does not meet it is refused when it is opened. Images and latents are
// `{ data: Float32Array, dims: number[] }`, row-major (an onnxruntime Tensor is one too).
//
// Where the hosts differ: no run time limit here (onnxruntime's JavaScript API cannot stop a
// run in flight), and a JavaScript number 3.0 is the integer 3 (Python refuses floats as counts).

const { asTensor, checkCount, checkRows, checkTemperature, condition, labelRows } = __checks;
const { firstLine, readSource, resolveOrt } = __engine;
const { RuntimeInputError, VAEExportError } = __errors;
const { MAX_BATCH, MAX_ELEMENTS, MAX_SAMPLES, MAX_STEPS, MAX_TILE } = __limits;
const { PREFIX, readMetadata } = __metadata;
const { readModel } = __onnxproto;
const { formatShape, pyList, pyRepr, typeName } = __pyformat;
const { freshSeed, normalLatents, scaled, seedKey } = __sampling;
const { DEFAULT_OVERLAP, tileGeometry, tiledDecode } = __tiling;

const LOG_EPS = 1e-7; // clamps probabilities away from 0 and 1 inside log()
// `gaussian` graphs (diffusers' autoencoders): unit variance in their native [-1, 1] range,
// sigma 0.5 in the graphs' [0, 1] pixels (the Python runtime's GAUSSIAN_SIGMA).
const GAUSSIAN_SIGMA = 0.5;

const SPECS = {
  encoder: [["x"], ["mu", "logvar"]],
  decoder: [["z"], ["x_hat"]],
  classifier: [["x"], ["logits"]],
};

/** @typedef {{ data: Float32Array, dims: number[] }} Tensor */
/**
 * @typedef {{ ort?: any, executionProviders?: any[], threads?: number, name?: string, sessionOptions?: object }}
 *   LoadOptions
 */

const prod = (dims) => dims.reduce((a, b) => a * b, 1);

/** Each contract value's dims after batch, by name (null: symbolic). */
function valueShapes(latent, image, numClasses) {
  return {
    x: image, x_hat: image, z: latent, mu: latent, logvar: latent,
    ...(numClasses ? { y: [numClasses], logits: [numClasses] } : {}),
  };
}

/** contract.symbolic_names: the names of an image's or latent's last two axes. */
function symbolicNames(image, rank) {
  const names = ["batch", ...new Array(rank - 1).fill("")];
  if (rank >= 3) [names[rank - 2], names[rank - 1]] = image ? ["height", "width"] : ["latent_height", "latent_width"];
  return names;
}

/** session._shown: "name float [batch, 1, 28, 28]". */
function shown(v) {
  const dims = (v.dims ?? []).map((d) => (typeof d === "number" ? String(d) : d || "?")).join(", ");
  return `${v.name} ${v.type.replace(/^tensor\(/, "").replace(/\)+$/, "")} [${dims}]`;
}

/** (height, width) as two integers, or null when `size` is not a pair of integers. */
function pair(size) {
  if (!Array.isArray(size) && !ArrayBuffer.isView(size)) return null;
  const items = Array.from(size);
  const integral = (v) => (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
  return items.length === 2 && items.every(integral) ? [Number(items[0]), Number(items[1])] : null;
}

class Graph {
  /** @type {string} */
  static role;

  /**
   * Open a graph: a path (Node), a URL, or the model's bytes.
   * @template {typeof Graph} T
   * @this {T}
   * @param {string | URL | Uint8Array | ArrayBuffer} src
   * @param {LoadOptions} [options]
   * @returns {Promise<InstanceType<T>>}
   */
  static async load(src, options = {}) {
    const graph = /** @type {InstanceType<T>} */ (new this());
    await graph._open(src, options);
    return graph;
  }

  get role() {
    return /** @type {typeof Graph} */ (this.constructor).role;
  }

  async _open(src, options) {
    const ort = await resolveOrt(options.ort);
    const { bytes, where } = await readSource(src, options.name);
    this.ort = ort;
    this.path = where;
    const sessionOptions = {
      graphOptimizationLevel: "all", executionMode: "sequential", interOpNumThreads: 1, logSeverityLevel: 4,
      ...(options.threads ? { intraOpNumThreads: options.threads } : {}),
      ...(options.executionProviders ? { executionProviders: options.executionProviders } : {}),
      ...options.sessionOptions,
    };
    try {
      this.session = await ort.InferenceSession.create(bytes, sessionOptions);
    } catch (exc) {
      throw new RuntimeInputError(`${where}: ONNX Runtime cannot load it (${firstLine(exc)})`);
    }
    try {
      this._read(bytes, where);
    } catch (exc) {
      await this.session.release?.(); // refused: free what onnxruntime allocated
      throw exc;
    }
  }

  /** The metadata and the signature, checked against the contract. */
  _read(bytes, where) {
    const model = readModel(bytes, where);
    this._raw = Object.fromEntries(Object.entries(model.metadata)
      .filter(([k]) => k.startsWith(PREFIX)).map(([k, v]) => [k.slice(PREFIX.length), v]));
    /** The graph's metadata, read and typed by the codec (metadata.js). */
    this.meta = readMetadata(model.metadata, where);
    const conditional = this.meta.numClasses > 0 && this.role !== "classifier";
    const [inputs, outputs] = SPECS[this.role];
    this.inputNames = conditional ? [...inputs, "y"] : inputs;
    this.outputNames = outputs;
    const foundIn = Array.from(this.session.inputNames);
    const foundOut = Array.from(this.session.outputNames);
    if (foundIn.join() !== this.inputNames.join() || foundOut.join() !== outputs.join()) {
      throw new RuntimeInputError(`${where}: expected a ${this.role} graph ${this.inputNames.join(", ")} -> ` +
        `${outputs.join(", ")}, found ${foundIn.join(", ") || "(no inputs)"} -> ${foundOut.join(", ")}`);
    }
    if (this.meta.role !== this.role) { // names first, as Python: a graph of another role fails on them
      throw new RuntimeInputError(`${where}: expected a ${this.role} graph, found metadata role ${this.meta.role}`);
    }
    const declared = new Map([...model.inputs, ...model.outputs].map((v) => [v.name, v]));
    this.values = [...foundIn, ...foundOut].map((n) => declared.get(n) ?? { name: n, type: "unknown", dims: null });
    this._checkSignature();
    const dimsAfterBatch = (v) => (v.dims ?? []).slice(1).map((d) => (typeof d === "number" ? d : null));
    /** The primary input's dims after batch; null where symbolic (height, width). */
    this.inputShape = dimsAfterBatch(this.values[0]);
    this.outputShape = dimsAfterBatch(this.values[foundIn.length]);
  }

  /** session.check_signature against the shapes the metadata states. */
  _checkSignature() {
    let image = this.meta.imageShape;
    if (image === null) {
      const pixels = this.values.find((v) => v.name === "x") ?? this.values.find((v) => v.name === "x_hat");
      const channels = pixels?.dims?.length === 4 ? pixels.dims[1] : null;
      if (typeof channels !== "number") {
        throw new RuntimeInputError(`${this.path}: a symbolic-size graph must fix its channel count, found ` +
          `${pixels ? shown(pixels) : "no image value"}`);
      }
      image = [channels, null, null];
    }
    const all = valueShapes(this.meta.latentShape, image, this.meta.numClasses);
    const names = [...this.inputNames, ...this.outputNames];
    const shapes = Object.fromEntries(names.map((n) => [n, all[n] ?? []]));
    for (const v of this.values) {
      const want = shapes[v.name];
      const ok = want !== undefined && v.type === "tensor(float)" && v.dims !== null &&
        v.dims.length === 1 + want.length && typeof v.dims[0] !== "number" &&
        want.every((w, k) => (w === null ? typeof v.dims[k + 1] !== "number" : v.dims[k + 1] === w && w >= 1)) &&
        prod(want.filter((w) => w !== null)) <= MAX_ELEMENTS;
      if (!ok) {
        const expected = names.map((n) => `${n} float [batch, ${shapes[n].map((d) => d ?? "?").join(", ")}]`)
          .join("; ");
        throw new RuntimeInputError(`${this.path}: not the ${this.role} signature of the contract: expected ` +
          `${expected}, found ${this.values.map(shown).join("; ")}`);
      }
    }
  }

  /** The graph's `vae_export.*` metadata as strings, without the prefix, as the file has them. */
  get metadata() {
    return this._raw;
  }

  get stride() {
    return this.meta.stride;
  }

  get numClasses() {
    return this.meta.numClasses;
  }

  get classNames() {
    return this.meta.classNames;
  }

  _expected(shape, image) {
    const names = symbolicNames(image, shape.length + 1).slice(1);
    const dims = shape.map((d, k) => (d !== null ? String(d) : names[k])).join(", ");
    const rule = image && this.stride && shape.includes(null) ? ` (height and width multiples of ${this.stride})` : "";
    return `[batch, ${dims}]${rule}`;
  }

  /**
   * x against `shape` (default: the graph's input): rank, fixed dims, the stride rule for
   * symbolic image dims; real values, finite, a non-empty batch. Returns float32 data.
   * @returns {Tensor}
   */
  _check(x, what, shape = this.inputShape, image = false) {
    const array = asTensor(x, what);
    const dims = array.dims;
    let fits = dims.length === 1 + shape.length && shape.every((d, k) => d === null || d === dims[k + 1]);
    if (fits && image && this.stride && shape.includes(null)) {
      fits = shape.every((d, k) => d !== null || (dims[k + 1] % this.stride === 0 && dims[k + 1] > 0));
    }
    if (!fits) {
      throw new RuntimeInputError(`${what}: expected shape ${this._expected(shape, image)}, found ${pyList(dims)}`);
    }
    if (dims[0] === 0) throw new RuntimeInputError(`${what}: expected at least one item in the batch, found 0`);
    if (dims[0] > MAX_BATCH) {
      throw new RuntimeInputError(`${what}: expected at most ${MAX_BATCH} items in the batch, found ${dims[0]}`);
    }
    if (!/^(u?int|float)/.test(array.dtype)) {
      throw new RuntimeInputError(`${what}: expected a real-valued array, found dtype ${array.dtype}`);
    }
    const data = array.data instanceof Float32Array ? array.data : Float32Array.from(array.data);
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) throw new RuntimeInputError(`${what}: contains NaN or Inf`);
    }
    return { data, dims: Array.from(dims) };
  }

  /**
   * One run: the primary input (and y rows); the outputs in the contract's order.
   * @param {Tensor} x @param {Float32Array | null} [rows]
   * @returns {Promise<Tensor[]>}
   */
  async _run(x, rows = null) {
    const { Tensor } = this.ort;
    const feeds = { [this.inputNames[0]]: new Tensor("float32", x.data, x.dims) };
    if (rows) feeds.y = new Tensor("float32", rows, [x.dims[0], this.numClasses]);
    let results;
    try {
      results = await this.session.run(feeds);
    } catch (exc) {
      throw new VAEExportError(`${this.path}: ONNX Runtime failed to run it (${firstLine(exc)})`);
    }
    return this.outputNames.map((n) => ({
      data: /** @type {Float32Array} */ (results[n].data), dims: Array.from(results[n].dims),
    }));
  }

  /** Frees the onnxruntime session. */
  async release() {
    await this.session?.release?.();
  }
}

/** One class as a row: a class index, or a row of class weights (graphs._one_row). */
function oneRow(value, numClasses, what) {
  const array = asTensor(value, what);
  if (array.dims.length === 0) return labelRows(value, numClasses, 1, what);
  const dims = array.dims.length === 1 ? [1, array.dims[0]] : array.dims;
  return checkRows({ data: array.data, dims }, numClasses, 1, what).subarray(0, numClasses);
}

class VAEDecoder extends Graph {
  static role = "decoder";

  /** [latent] or [c, h, w]; null where symbolic (a --dynamic-size decoder). */
  get latentShape() {
    return this.inputShape;
  }

  /** The latent size of a flat latent (v1 decoders). */
  get latentDim() {
    if (this.latentShape.length !== 1) {
      throw new RuntimeInputError(`latent_dim: the latent ${formatShape(this.latentShape)} is not flat; use latent_shape`);
    }
    return this.latentShape[0];
  }

  /** [C, H, W]; H and W null for a symbolic size. */
  get imageShape() {
    return this.outputShape;
  }

  /** The size a symbolic-size decoder was exported at (metadata export_size), else null. */
  get exportSize() {
    return this.meta.exportSize;
  }

  /** The image size sample() makes without `size`: the fixed size, or the export size (null
   * for a symbolic-size decoder exported before export_size was recorded: pass `size`). */
  get defaultSize() {
    const [, h, w] = this.imageShape;
    return h !== null && w !== null ? [h, w] : this.meta.exportSize;
  }

  /**
   * The concrete latent shape for images of `size` (default: defaultSize).
   * @param {[number, number]} [size]
   * @returns {number[]}
   */
  latentShapeFor(size) {
    const given = size !== undefined && size !== null;
    if (!this.latentShape.includes(null)) {
      const fixed = this.imageShape.slice(1);
      const p = given ? pair(size) : null;
      if (given && (p === null || p[0] !== fixed[0] || p[1] !== fixed[1])) {
        throw new RuntimeInputError(`size: this decoder makes ${formatShape(fixed)} images only, found ${pyRepr(size)}`);
      }
      return Array.from(this.latentShape);
    }
    const stride = this.stride || 1;
    if (!given) {
      size = this.defaultSize;
      if (size === null) {
        throw new RuntimeInputError("size: this decoder has a symbolic image size and no recorded export size; " +
          `pass size=(height, width), multiples of ${stride}`);
      }
    }
    const p = pair(size);
    if (p === null || !p.every((v) => v > 0 && v % stride === 0)) {
      throw new RuntimeInputError(`size: expected (height, width), positive multiples of ${stride}, found ${pyRepr(size)}`);
    }
    if (this.imageShape[0] * p[0] * p[1] > MAX_ELEMENTS) {
      throw new RuntimeInputError(`size: ${p[0]}x${p[1]} images hold more than ${MAX_ELEMENTS} values each`);
    }
    return [this.latentShape[0], p[0] / stride, p[1] / stride];
  }

  /**
   * Images from latents z [n, ...latentShape]; a conditional decoder takes `labels` (class
   * indices: one for every image, or one per image) or `y` (rows of class weights summing to
   * 1). With `tile` (latent cells), a latent larger than a tile is decoded in overlapping tiles
   * blended as diffusers' enable_tiling() does: memory bounded by the tile, not the image.
   * @param {any} z
   * @param {{ y?: any, labels?: any, tile?: number, overlap?: number }} [options]
   * @returns {Promise<Tensor>}
   */
  async decode(z, { y, labels, tile, overlap = DEFAULT_OVERLAP } = {}) {
    const latents = this._check(z, "z");
    const rows = condition(y, labels, this.numClasses, latents.dims[0]);
    if (tile === undefined || tile === null) return (await this._run(latents, rows))[0];
    tile = checkCount("tile", tile, 1, MAX_TILE);
    if (this.latentShape.length !== 3 || !this.latentShape.includes(null) || !this.stride) {
      throw new RuntimeInputError("tile: tiled decoding needs a decoder with a symbolic size (--dynamic-size)");
    }
    if (typeof overlap !== "number") {
      throw new RuntimeInputError(`overlap: expected a fraction in [0, 1), found ${typeName(overlap)} ${pyRepr(overlap)}`);
    }
    try {
      tileGeometry(tile, this.stride, overlap);
    } catch (exc) {
      throw new RuntimeInputError(exc.message);
    }
    return tiledDecode(async (part) => (await this._run(part, rows))[0], latents, tile, this.stride, overlap);
  }

  /**
   * The latents sample(n, options) decodes: z ~ N(0, temperature^2 I) from the portable
   * generator (sampling.js), the same bits as the Python runtime's for the seed.
   * @param {number} n
   * @param {{ seed?: number | bigint, size?: [number, number], temperature?: number }} [options]
   * @returns {Promise<Tensor>}
   */
  async priorLatents(n, { seed, size, temperature = 1 } = {}) {
    n = checkCount("n", n, 1, MAX_BATCH);
    const scale = checkTemperature(temperature);
    return this._prior(n, this.latentShapeFor(size), seed, scale);
  }

  async _prior(n, shape, seed, scale) {
    const given = seed !== undefined && seed !== null;
    if (given) seedKey(seed); // refuses a bad seed with check_seed's message, first as in Python
    if (n * prod(shape) > MAX_ELEMENTS) {
      throw new RuntimeInputError(`n: ${n} latents of shape ${pyList(shape)} hold more than ${MAX_ELEMENTS} values`);
    }
    return scaled(normalLatents([n, ...shape], given ? seed : await freshSeed()), scale);
  }

  /**
   * n images decoded from z ~ N(0, temperature^2 I) (temperature 1: the prior), the same for
   * a seed in every host; `size` [height, width] for a symbolic-size decoder (default:
   * defaultSize). Conditional decoders: `label` (every image of that class) or `labels`
   * (one per image).
   * @param {number} n
   * @param {{ seed?: number | bigint, size?: [number, number], label?: number, labels?: any,
   *   temperature?: number }} [options]
   * @returns {Promise<Tensor>}
   */
  async sample(n, { seed, size, label, labels, temperature = 1 } = {}) {
    n = checkCount("n", n, 1, MAX_BATCH);
    const scale = checkTemperature(temperature);
    const hasLabel = label !== undefined && label !== null;
    if (hasLabel && labels !== undefined && labels !== null) {
      throw new RuntimeInputError("label: pass label= (one class for all) or labels= (one per image), not both");
    }
    const z = await this._prior(n, this.latentShapeFor(size), seed, scale);
    return this.decode(z, { labels: hasLabel ? label : labels });
  }

  /**
   * Decodes of `steps` points on the straight line from z0 to z1 (both included), single
   * latents (a leading batch axis of 1 is accepted too). A conditional decoder also moves
   * from class y0 to class y1 (each a class index or a row of class weights; y1 defaults to
   * y0), mixing the rows in step.
   * @param {any} z0 @param {any} z1
   * @param {{ steps?: number, y0?: any, y1?: any }} [options]
   * @returns {Promise<Tensor>}
   */
  async interpolate(z0, z1, { steps = 8, y0, y1 } = {}) {
    steps = checkCount("steps", steps, 2, MAX_STEPS);
    const ends = [];
    for (const [name, z] of [["z0", z0], ["z1", z1]]) {
      let array = asTensor(z, name);
      if (array.dims.length === this.latentShape.length) array = { ...array, dims: [1, ...array.dims] };
      const checked = this._check(array, name);
      const per = prod(checked.dims.slice(1));
      ends.push({ data: checked.data.subarray(0, per), dims: checked.dims.slice(1) });
    }
    if (pyList(ends[0].dims) !== pyList(ends[1].dims)) {
      throw new RuntimeInputError(`z1: expected the shape of z0 ${pyList(ends[0].dims)}, found ${pyList(ends[1].dims)}`);
    }
    // np.linspace(0, 1, steps, dtype=float32): i * (1 / (steps - 1)) in binary64, the last
    // point exactly 1, then rounded to float32; the mix (1 - t) z0 + t z1 in float32.
    const t = Array.from({ length: steps }, (_, i) => Math.fround(i === steps - 1 ? 1 : i * (1 / (steps - 1))));
    const per = ends[0].data.length;
    const z = new Float32Array(steps * per);
    t.forEach((ti, i) => {
      const wOld = Math.fround(1 - ti);
      for (let k = 0; k < per; k++) {
        z[i * per + k] = Math.fround(wOld * ends[0].data[k]) + Math.fround(ti * ends[1].data[k]);
      }
    });
    const latents = { data: z, dims: [steps, ...ends[0].dims] };
    const has = (v) => v !== undefined && v !== null;
    if (!this.numClasses) return this.decode(latents, { y: has(y0) ? y0 : y1 }); // refuses a class
    if (!has(y0)) {
      throw new RuntimeInputError(`y0: this decoder is conditional on ${this.numClasses} classes; pass y0= ` +
        "(and y1=), each a class index or a row of class weights");
    }
    const r0 = oneRow(y0, this.numClasses, "y0");
    const r1 = has(y1) ? oneRow(y1, this.numClasses, "y1") : r0;
    const k = this.numClasses;
    const rows = new Float32Array(steps * k);
    t.forEach((w, i) => {
      const wOld = Math.fround(1 - w);
      for (let c = 0; c < k; c++) rows[i * k + c] = Math.fround(wOld * r0[c]) + Math.fround(w * r1[c]);
    });
    return this.decode(latents, { y: { data: rows, dims: [steps, k] } });
  }
}

class VAEEncoder extends Graph {
  static role = "encoder";

  /**
   * (mu, logvar) for images x [n, C, H, W] in [0, 1]; a conditional encoder takes `labels`
   * or `y` as the decoder does.
   * @param {any} x
   * @param {{ y?: any, labels?: any }} [options]
   * @returns {Promise<{ mu: Tensor, logvar: Tensor }>}
   */
  async encode(x, { y, labels } = {}) {
    const images = this._check(x, "x", this.inputShape, true);
    const [mu, logvar] = await this._run(images, condition(y, labels, this.numClasses, images.dims[0]));
    return { mu, logvar };
  }
}

class VAEClassifier extends Graph {
  static role = "classifier";

  /** @param {any} x @returns {Promise<Tensor>} logits [n, K] */
  async logits(x) {
    return (await this._run(this._check(x, "x", this.inputShape, true)))[0];
  }

  /** Class probabilities q(y | x): the softmax of the logits (in binary64), rows summing to 1.
   * @param {any} x @returns {Promise<Tensor>} */
  async classify(x) {
    const logits = await this.logits(x);
    const [n, k] = logits.dims;
    const out = new Float32Array(n * k);
    for (let i = 0; i < n; i++) {
      const row = logits.data.subarray(i * k, (i + 1) * k);
      const top = Math.max(...row);
      const e = Array.from(row, (v) => Math.exp(v - top));
      const sum = e.reduce((a, b) => a + b, 0);
      e.forEach((v, c) => { out[i * k + c] = v / sum; });
    }
    return { data: out, dims: [n, k] };
  }
}

/**
 * -log p(x | z) per image in nats, summed over pixels: Bernoulli with probabilities x_hat
 * (continuous x allowed), or a Gaussian N(x_hat, GAUSSIAN_SIGMA^2) per pixel.
 * @param {Float32Array} x @param {Float32Array} xHat @param {number} n @param {string} likelihood
 */
function negativeLogLikelihood(x, xHat, n, likelihood) {
  const per = x.length / n;
  const out = new Float64Array(n);
  const logNorm = Math.log(GAUSSIAN_SIGMA * Math.sqrt(2 * Math.PI));
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let k = i * per; k < (i + 1) * per; k++) {
      if (likelihood === "gaussian") {
        const d = (x[k] - xHat[k]) / GAUSSIAN_SIGMA;
        sum += 0.5 * d * d + logNorm;
      } else {
        const p = Math.min(Math.max(xHat[k], LOG_EPS), 1 - LOG_EPS);
        sum -= x[k] * Math.log(p) + (1 - x[k]) * Math.log1p(-p);
      }
    }
    out[i] = sum;
  }
  return out;
}

/** The graphs together: reconstruction, anomaly scores, and classification (with a
 * semi-supervised model's classifier.onnx). */
class VAE {
  /**
   * @param {VAEEncoder} encoder @param {VAEDecoder} decoder @param {VAEClassifier | null} [classifier]
   */
  constructor(encoder, decoder, classifier = null) {
    this.encoder = encoder;
    this.decoder = decoder;
    this.classifier = classifier;
    const counts = new Set([encoder.numClasses, decoder.numClasses]);
    if (classifier) counts.add(classifier.numClasses);
    if (counts.size !== 1) {
      throw new RuntimeInputError(`${decoder.path}: the graphs disagree on the number of classes ` +
        `(${pyList([...counts].sort((a, b) => a - b))}); they are not from one model`);
    }
    this.numClasses = decoder.numClasses;
  }

  /**
   * Open the encoder and decoder (and a classifier) of one model.
   * @param {string | URL | Uint8Array | ArrayBuffer} encoder
   * @param {string | URL | Uint8Array | ArrayBuffer} decoder
   * @param {LoadOptions & { classifier?: string | URL | Uint8Array | ArrayBuffer }} [options]
   */
  static async load(encoder, decoder, { classifier, ...options } = {}) {
    const [e, d, c] = await Promise.all([
      VAEEncoder.load(encoder, options), VAEDecoder.load(decoder, options),
      classifier ? VAEClassifier.load(classifier, options) : null,
    ]);
    return new VAE(e, d, c);
  }

  /**
   * The model's graphs in an artifacts directory (Node) or under a base URL: encoder.onnx and
   * decoder.onnx, and classifier.onnx when it is there (`variant`: encoder.<variant>.onnx ...).
   * @param {string | URL} artifacts
   * @param {LoadOptions & { variant?: string }} [options]
   */
  static async open(artifacts, { variant = "fp32", ...options } = {}) {
    if (typeof artifacts !== "string" && !(artifacts instanceof URL)) {
      throw new RuntimeInputError(`artifacts: expected a directory path, found ${typeName(artifacts)}`);
    }
    const file = (role) => (variant === "fp32" ? `${role}.onnx` : `${role}.${variant}.onnx`);
    const at = (role) => (artifacts instanceof URL || /^[a-z][a-z0-9+.-]*:\/\//i.test(artifacts)
      ? new URL(file(role), String(artifacts).replace(/\/?$/, "/"))
      : `${String(artifacts).replace(/[\\/]$/, "")}/${file(role)}`);
    let classifier = null;
    try {
      classifier = await VAEClassifier.load(at("classifier"), options);
    } catch (exc) {
      if (!(exc instanceof RuntimeInputError && / file not found$/.test(exc.message))) throw exc;
    }
    const [e, d] = await Promise.all([
      VAEEncoder.load(at("encoder"), options), VAEDecoder.load(at("decoder"), options),
    ]);
    return new VAE(e, d, classifier);
  }

  /** Class probabilities q(y | x) [n, K]. @param {any} x */
  async classify(x) {
    if (!this.classifier) {
      throw new RuntimeInputError("classify: no classifier graph; pass classifier_path= (classifier.onnx of a " +
        "semi-supervised model)");
    }
    return this.classifier.classify(x);
  }

  /** A conditional model's class rows for x: as given, else the classifier's q(y | x). */
  async _rows(x, y, labels) {
    const none = (v) => v === undefined || v === null;
    if (this.numClasses && none(y) && none(labels) && this.classifier) return (await this.classifier.classify(x)).data;
    return condition(y, labels, this.numClasses, x.dims[0]);
  }

  /**
   * decode(mu): the deterministic reconstruction. Conditional models use the given class,
   * else the classifier's q(y | x) rows when there is a classifier.
   * @param {any} x @param {{ y?: any, labels?: any }} [options]
   */
  async reconstruct(x, { y, labels } = {}) {
    const images = this.encoder._check(x, "x", this.encoder.inputShape, true);
    const rows = await this._rows(images, y, labels);
    const yRows = rows && { data: rows, dims: [images.dims[0], this.numClasses] };
    const { mu } = await this.encoder.encode(images, { y: yRows });
    return this.decoder.decode(mu, { y: yRows });
  }

  /**
   * Negative ELBO per image in nats (higher = more anomalous), as the Python runtime's
   * VAE.anomaly_score: E_q[-log p(x|z)] (the likelihood the decoder's metadata names) plus the
   * analytic KL, the expectation over `samples` draws z = mu + eps * exp(0.5 * logvar). The
   * draws are the portable generator's for `seed` (eps [samples, n, ...latent], the same in
   * every host), or `eps` as given. Conditional models: with `labels` or `y`, the bound on
   * -log p(x | y); with neither, a bound on -log p(x) under a uniform class prior, weighted by
   * the classifier's q(y | x) when there is one (M2's bound), else -log sum_k exp(-L_k) / K.
   * @param {any} x
   * @param {{ samples?: number, seed?: number | bigint | null, eps?: any, y?: any, labels?: any }} [options]
   * @returns {Promise<Float64Array>}
   */
  async anomalyScore(x, { samples = 1, seed = 0, eps, y, labels } = {}) {
    samples = checkCount("samples", samples, 1, MAX_SAMPLES);
    if (seed !== null && seed !== undefined) seedKey(seed);
    const images = this.encoder._check(x, "x", this.encoder.inputShape, true);
    const n = images.dims[0];
    const k = this.numClasses;
    const none = (v) => v === undefined || v === null;
    if (!k || !none(y) || !none(labels)) {
      return this._negElbo(images, condition(y, labels, k, n), samples, seed, eps);
    }
    const perClass = [];
    for (let c = 0; c < k; c++) perClass.push(await this._negElbo(images, labelRows(c, k, n), samples, seed, eps));
    const out = new Float64Array(n);
    if (this.classifier) {
      const q = (await this.classifier.classify(images)).data;
      for (let i = 0; i < n; i++) {
        let sum = 0;
        for (let c = 0; c < k; c++) {
          const qc = q[i * k + c];
          sum += qc * (perClass[c][i] + Math.log(k)) + qc * Math.log(Math.min(Math.max(qc, LOG_EPS), 1));
        }
        out[i] = sum;
      }
      return out;
    }
    for (let i = 0; i < n; i++) { // log-sum-exp, stable
      const low = Math.min(...perClass.map((l) => l[i]));
      const sum = perClass.reduce((a, l) => a + Math.exp(low - l[i]), 0);
      out[i] = low - Math.log(sum) + Math.log(k);
    }
    return out;
  }

  async _negElbo(images, rows, samples, seed, eps) {
    const n = images.dims[0];
    const yRows = rows && { data: rows, dims: [n, this.numClasses] };
    const { mu, logvar } = await this.encoder.encode(images, { y: yRows });
    const per = mu.data.length;
    let draws;
    if (eps !== undefined && eps !== null) {
      const given = asTensor(eps, "eps");
      const want = [samples, ...mu.dims];
      if (pyList(given.dims) !== pyList(want)) {
        throw new RuntimeInputError(`eps: expected shape ${pyList(want)}, found ${pyList(given.dims)}`);
      }
      draws = Float32Array.from(given.data);
    } else {
      draws = normalLatents([samples, ...mu.dims], seed ?? (await freshSeed())).data;
    }
    const nll = new Float64Array(n);
    for (let s = 0; s < samples; s++) {
      // z = mu + eps * exp(0.5 logvar), in float32 as numpy computes it
      const z = new Float32Array(per);
      for (let k = 0; k < per; k++) {
        const sigma = Math.fround(Math.exp(Math.fround(0.5 * logvar.data[k])));
        z[k] = mu.data[k] + Math.fround(draws[s * per + k] * sigma);
      }
      const decoded = await this.decoder.decode({ data: z, dims: mu.dims }, { y: yRows });
      const terms = negativeLogLikelihood(images.data, decoded.data, n, this.decoder.meta.likelihood);
      terms.forEach((v, i) => { nll[i] += v; });
    }
    const latent = per / n;
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let kl = 0;
      for (let k = i * latent; k < (i + 1) * latent; k++) {
        const lv = logvar.data[k];
        const m = mu.data[k];
        kl += Math.fround(1 + lv) - m * m - Math.fround(Math.exp(lv));
      }
      out[i] = nll[i] / samples - 0.5 * kl;
    }
    return out;
  }
}
return { GAUSSIAN_SIGMA, VAEDecoder, VAEEncoder, VAEClassifier, negativeLogLikelihood, VAE };
})();

// ---- src/index.js ----
export const { VAE, VAEClassifier, VAEDecoder, VAEEncoder, GAUSSIAN_SIGMA, negativeLogLikelihood } = __graphs;
export const { RuntimeInputError, VAEExportError } = __errors;
export const { GENERATOR, ln, normalLatents, normals, scaled, threefry2x32 } = __sampling;
export const { readMetadata } = __metadata;
export const { readModel } = __onnxproto;
export const { DEFAULT_OVERLAP, tileGeometry, tiledDecode } = __tiling;
export const { ORT_VERSION } = __engine;
export const limits = Object.freeze(__limits);
