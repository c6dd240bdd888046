// The metadata codec (metadata.js) and the protobuf reader (onnxproto.js): every key's rule and
// message, as the Python runtime's codec.py words them.

import assert from "node:assert/strict";
import { test } from "node:test";

import { RuntimeInputError } from "../src/errors.js";
import { readMetadata } from "../src/metadata.js";
import { readModel } from "../src/onnxproto.js";

const P = "vae_export.";
const FLAT = { role: "decoder", latent_dim: "32", image_shape: "1,28,28", latent_shape: "[32]", likelihood: "bernoulli",
  version: "0.1.0", variant: "fp32" };
const props = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [P + k, v]));
const read = (o, extra = {}) => readMetadata({ ...props(o), ...extra }, "g.onnx");
const fails = (o, message) => assert.throws(() => read(o), (e) => e instanceof RuntimeInputError && e.message === message,
  message);

test("a v2 flat graph", () => {
  const m = read(FLAT, { "onnx.other": "kept out" });
  assert.equal(m.role, "decoder");
  assert.deepEqual(m.latentShape, [32]);
  assert.deepEqual(m.imageShape, [1, 28, 28]);
  assert.equal(m.stride, null);
  assert.equal(m.exportSize, null);
  assert.equal(m.numClasses, 0);
  assert.deepEqual(m.classNames, []);
  assert.equal(m.version, "0.1.0");
  assert.deepEqual(m.extra, {});
});

test("a v1 graph: latent_dim, C,H,W, no likelihood", () => {
  const m = read({ role: "encoder", latent_dim: "16", image_shape: "1, 28, 28" });
  assert.deepEqual(m.latentShape, [16]);
  assert.deepEqual(m.imageShape, [1, 28, 28]);
  assert.equal(m.likelihood, "bernoulli");
  assert.equal(m.variant, "fp32");
});

test("a symbolic-size graph, with and without export_size", () => {
  const conv = { role: "decoder", image_shape: "null", latent_shape: "[4, null, null]", stride: "4" };
  const old = read(conv);
  assert.deepEqual(old.latentShape, [4, null, null]);
  assert.equal(old.imageShape, null);
  assert.equal(old.stride, 4);
  assert.equal(old.exportSize, null);
  assert.deepEqual(read({ ...conv, export_size: "[28, 36]" }).exportSize, [28, 36]);
  assert.deepEqual(read({ ...conv, image_shape: "[1, 28, 28]", latent_shape: "[4, 7, 7]" }).imageShape, [1, 28, 28]);
});

test("classes and their names; malformed names read as none", () => {
  const cond = { ...FLAT, num_classes: "3", class_names: '["a", "b", "c"]' };
  assert.deepEqual(read(cond).classNames, ["a", "b", "c"]);
  assert.equal(read(cond).numClasses, 3);
  for (const names of ['["a", "b"]', "[1, 2, 3]", "not json", '{"a": 1}']) {
    assert.deepEqual(read({ ...cond, class_names: names }).classNames, []);
  }
});

test("other keys are kept, in order", () => {
  const m = read({ ...FLAT, native_range: "[-1, 1]", scaling_factor: "0.18215" });
  assert.deepEqual(Object.entries(m.extra), [["native_range", "[-1, 1]"], ["scaling_factor", "0.18215"]]);
});

test("a graph that is not ours", () => {
  const message = "g.onnx: not a vae-export graph (no vae_export.role, vae_export.latent_shape and " +
    "vae_export.image_shape metadata); export it with vae-export";
  fails({}, message);
  fails({ role: "decoder", image_shape: "1,28,28" }, message);
  fails({ latent_shape: "[2]", image_shape: "1,28,28" }, message);
  fails({ role: "decoder", latent_shape: "[2]" }, message);
  assert.throws(() => readMetadata({ role: "decoder", latent_shape: "[2]", image_shape: "1,2,2" }, "g.onnx"),
    { message }); // without the prefix, the keys are someone else's
});

test("every structural key's rule", () => {
  const shape13 = "a list of 1 or 3 positive integers (null for symbolic) of at most 268435456 values";
  const cases = [
    [{ ...FLAT, role: "generator" }, 'g.onnx: metadata vae_export.role: expected one of encoder, decoder, classifier, found "generator"'],
    [{ ...FLAT, latent_shape: "[0]" }, `g.onnx: metadata vae_export.latent_shape: expected ${shape13}, found "[0]"`],
    [{ ...FLAT, latent_shape: "[1.0]" }, `g.onnx: metadata vae_export.latent_shape: expected ${shape13}, found "[1.0]"`],
    [{ ...FLAT, latent_shape: "[2, 3]" }, `g.onnx: metadata vae_export.latent_shape: expected ${shape13}, found "[2, 3]"`],
    [{ ...FLAT, latent_shape: "[true]" }, `g.onnx: metadata vae_export.latent_shape: expected ${shape13}, found "[true]"`],
    [{ ...FLAT, latent_shape: "[65536, 65536, 65536]" },
      `g.onnx: metadata vae_export.latent_shape: expected ${shape13}, found "[65536, 65536, 65536]"`],
    [{ ...FLAT, image_shape: "1,28" }, "g.onnx: metadata vae_export.image_shape: expected a list of 3 positive integers " +
      'of at most 268435456 values, found "1,28"'],
    [{ ...FLAT, image_shape: "[1, null, null]" }, "g.onnx: metadata vae_export.image_shape: expected a list of 3 positive " +
      'integers of at most 268435456 values, found "[1, null, null]"'],
    [{ role: "decoder", latent_dim: "x", image_shape: "1,28,28" },
      'g.onnx: metadata vae_export.latent_dim: expected an integer from 1 to 268435456, found "x"'],
    [{ ...FLAT, likelihood: "poisson" }, 'g.onnx: metadata vae_export.likelihood: expected one of bernoulli, gaussian, found "poisson"'],
    [{ ...FLAT, stride: "0" }, 'g.onnx: metadata vae_export.stride: expected an integer from 1 to 1024, found "0"'],
    [{ ...FLAT, stride: "4", export_size: "[30, 28]" },
      'g.onnx: metadata vae_export.export_size: expected [height, width], positive multiples of the stride 4, found "[30, 28]"'],
    [{ ...FLAT, export_size: "[28]" },
      'g.onnx: metadata vae_export.export_size: expected [height, width], positive multiples of the stride 1, found "[28]"'],
    [{ role: "decoder", image_shape: "null", latent_shape: "[32]" },
      'g.onnx: metadata vae_export.latent_shape: expected [c, null, null] for a graph with a symbolic image size, found "[32]"'],
    [{ ...FLAT, num_classes: "1" }, 'g.onnx: metadata vae_export.num_classes: expected an integer from 2 to 1000, found "1"'],
    [{ ...FLAT, num_classes: "１０" }, 'g.onnx: metadata vae_export.num_classes: expected an integer from 2 to 1000, ' +
      'found "\\uff11\\uff10"'],
  ];
  for (const [o, message] of cases) fails(o, message);
});

test("surrounding whitespace is Python's str.strip() set, not String.prototype.trim's", () => {
  const CONV = { role: "decoder", image_shape: "null", latent_shape: "[4, null, null]", stride: "4" };
  for (const space of ["\t", "\x1c", "\x85", "\u3000"]) {
    assert.equal(read({ ...CONV, image_shape: `${space}null${space}` }).imageShape, null);
  }
  for (const space of ["\t", "\x85", "\u3000"]) {
    assert.deepEqual(read({ ...FLAT, image_shape: `1,${space}28 ,28` }).imageShape, [1, 28, 28]);
  }
  fails({ ...CONV, image_shape: "\ufeffnull" }, "g.onnx: metadata vae_export.image_shape: expected a list of 3 " +
    'positive integers of at most 268435456 values, found "\\ufeffnull"');
  // a JSON value is parsed as written: JSON's own whitespace only
  assert.deepEqual(read({ ...FLAT, latent_shape: " \t[32]\n" }).latentShape, [32]);
  fails({ ...FLAT, latent_shape: "\x85[32]" }, "g.onnx: metadata vae_export.latent_shape: expected a list of 1 or 3 " +
    'positive integers (null for symbolic) of at most 268435456 values, found "\\u0085[32]"');
});

test("a long value is shown cut at 60 characters", () => {
  const long = "x".repeat(100);
  fails({ ...FLAT, role: long }, `g.onnx: metadata vae_export.role: expected one of encoder, decoder, classifier, found "${"x".repeat(60)}..."`);
});

// ---- the protobuf reader -----------------------------------------------------------------------

/** A protobuf encoder just big enough to write test models. */
const varint = (n) => {
  const out = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
  return out;
};
const bytesOf = (s) => [...new TextEncoder().encode(s)];
const field = (number, value) => (typeof value === "number"
  ? [...varint(number * 8), ...varint(value)]
  : [...varint(number * 8 + 2), ...varint(value.length), ...value]);
const str = (number, s) => field(number, bytesOf(s));
const dim = (d) => field(1, typeof d === "number" ? field(1, d) : str(2, d));
const valueInfo = (name, elem, dims) => [...str(1, name), ...field(2, field(1, [...field(1, elem), ...field(2, dims.flatMap(dim))]))];
const entry = (k, v) => field(14, [...str(1, k), ...str(2, v)]);

function model() {
  const graph = [
    ...field(5, [...str(8, "weight"), ...field(9, new Array(1000).fill(7))]), // an initializer, skipped
    ...field(11, valueInfo("z", 1, ["batch", 16])),
    ...field(12, valueInfo("x_hat", 1, ["batch", 1, 28, 28])),
  ];
  return new Uint8Array([...field(1, 8), ...str(2, "pytorch"), ...field(7, graph), ...entry(`${P}role`, "decoder"),
    ...entry(`${P}latent_shape`, "[16]"), ...entry("other", "é")]);
}

test("readModel: metadata_props and the signature, weights skipped", () => {
  const m = readModel(model(), "m.onnx");
  assert.deepEqual(m.metadata, { [`${P}role`]: "decoder", [`${P}latent_shape`]: "[16]", other: "é" });
  assert.deepEqual(m.inputs, [{ name: "z", type: "tensor(float)", dims: ["batch", 16] }]);
  assert.deepEqual(m.outputs, [{ name: "x_hat", type: "tensor(float)", dims: ["batch", 1, 28, 28] }]);
});

test("readModel: truncated bytes and ORT-format files are refused", () => {
  const bytes = model();
  assert.throws(() => readModel(bytes.subarray(0, bytes.length - 3), "m.onnx"),
    (e) => e instanceof RuntimeInputError && /^m\.onnx: not an ONNX model \(truncated/.test(e.message));
  const ort = new Uint8Array([0x10, 0, 0, 0, ...bytesOf("ORTM"), 0, 0, 0, 0]);
  assert.throws(() => readModel(ort, "m.ort"), { message: "m.ort: an ORT-format model (.ort); this package reads .onnx graphs" });
});
