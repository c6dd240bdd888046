// Checks of the runtime's arguments: counts, temperatures, arrays, class labels and rows, with
// the Python runtime's messages (vae_export_runtime/checks.py). Every bad argument is one
// RuntimeInputError naming it, what was expected and what was found.
//
// Arrays arrive as `{ data, dims }` (an onnxruntime Tensor is one), typed arrays, nested
// arrays of numbers, or a single number; `asTensor` makes them one form, with the numpy dtype
// Python would have seen (a typed array's own; for plain numbers int64 when all are integral,
// else float64), since the messages name it.

import { RuntimeInputError } from "./errors.js";
import { MAX_TEMPERATURE } from "./limits.js";
import { pyFormatG, pyList, pyRepr, typeName } from "./pyformat.js";

// A row of y may mix classes; it must still be a distribution (the Python runtime's tolerance).
export const ROW_SUM_TOLERANCE = 1e-3;

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
export function asTensor(value, what) {
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
export function checkCount(name, value, low, high) {
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
export function checkTemperature(value) {
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
export function labelRows(labels, numClasses, n, what = "labels") {
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
export function checkRows(y, numClasses, n, what = "y") {
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
export function condition(y, labels, numClasses, n) {
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
