// Values written into error messages the way Python writes them (repr, `:g`, json.dumps), so
// that a RuntimeInputError reads the same in JavaScript as in the Python runtime. JavaScript
// has one number type: an integral Number is shown as a Python int, any other as a float.

/** Python's type name for a value, as `type(v).__name__` would say it. */
export function typeName(value) {
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
export function pyFloat(x) {
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
export function pyFormatG(x, precision = 6) {
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
export function pyRepr(value) {
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
export function pyList(values) {
  return `[${Array.from(values).join(", ")}]`;
}

/** format_shape: a shape with "?" for a symbolic (null) dimension, [4, ?, ?]. */
export function formatShape(shape) {
  return `[${Array.from(shape, (d) => (d === null ? "?" : String(d))).join(", ")}]`;
}

/** Python's json.dumps of a str (ensure_ascii: every non-ASCII UTF-16 unit as \uXXXX). */
export function pyJsonString(s) {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) =>
    c === "\u007f" ? c : "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}
