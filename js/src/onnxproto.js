// Reads what the runtime needs from an .onnx file's protobuf bytes: the model's
// metadata_props and the graph's input/output signatures. onnxruntime's JavaScript API does not
// expose a model's metadata_props (Python's get_modelmeta().custom_metadata_map), so the
// package reads them itself. A dozen lines of protobuf wire format suffice: the walk visits the
// top-level fields and the graph's inputs and outputs, and skips everything else (weights
// included) by its length, so a 300 MB decoder costs microseconds.

import { RuntimeInputError } from "./errors.js";

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
export function readModel(bytes, where) {
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
