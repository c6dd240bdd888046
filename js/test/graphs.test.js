// The graphs on real exported models: a flat MLP, a conv model with a symbolic size, a
// conditional model, an M2 model with its classifier, and a tiny diffusers AutoencoderKL.
// They come from the toolkit (make_fixtures.py); point VAE_EXPORT_FIXTURES at them:
//
//   /work/main/.venv/bin/python js/test/make_fixtures.py js/test/fixtures
//   VAE_EXPORT_FIXTURES=js/test/fixtures npm test

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";

import * as ortNode from "onnxruntime-node";
import * as ortWeb from "onnxruntime-web";

import { RuntimeInputError, VAE, VAEClassifier, VAEDecoder, VAEEncoder, normalLatents, readModel, scaled } from "../src/index.js";

const FIXTURES = process.env.VAE_EXPORT_FIXTURES;
if (!FIXTURES) {
  // Failing, not skipping: a run without the graphs has not tested the package.
  test("VAE_EXPORT_FIXTURES names the exported graphs", () => {
    assert.fail("set VAE_EXPORT_FIXTURES to a directory written by `python js/test/make_fixtures.py DIR`");
  });
} else {
  await graphTests(resolve(FIXTURES));
}

const fails = (promise, message) => assert.rejects(promise, (e) => {
  assert.ok(e instanceof RuntimeInputError, `${e.name}: ${e.message}`);
  assert.equal(e.message, message);
  return true;
});
const zeros = (...dims) => ({ data: new Float32Array(dims.reduce((a, b) => a * b, 1)), dims });
const inUnitRange = (t) => t.data.every((v) => v >= 0 && v <= 1);

async function graphTests(F) {
  const at = (...p) => join(F, ...p);
  const flat = await VAEDecoder.load(at("flat", "decoder.onnx"));
  const conv = await VAEDecoder.load(at("conv", "decoder.onnx"));
  const cond = await VAEDecoder.load(at("cond", "decoder.onnx"));
  const kl = await VAEDecoder.load(at("kl", "decoder.onnx"));
  const sized = await VAEDecoder.load(at("variants", "conv-with-export-size.onnx"));
  const unsized = await VAEDecoder.load(at("variants", "conv-without-export-size.onnx"));

  test("the contract, read from each graph", () => {
    assert.deepEqual(flat.latentShape, [16]);
    assert.equal(flat.latentDim, 16);
    assert.deepEqual(flat.imageShape, [1, 28, 28]);
    assert.deepEqual(flat.defaultSize, [28, 28]);
    assert.equal(flat.numClasses, 0);
    assert.equal(flat.stride, null);
    assert.equal(flat.metadata.role, "decoder");
    assert.deepEqual(conv.latentShape, [4, null, null]);
    assert.deepEqual(conv.imageShape, [1, null, null]);
    assert.equal(conv.stride, 4);
    assert.equal(cond.numClasses, 10);
    assert.deepEqual(cond.classNames, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    assert.deepEqual(kl.imageShape, [3, null, null]);
    assert.equal(kl.stride, 2);
    assert.equal(kl.meta.source, "diffusers:AutoencoderKL");
  });

  test("the protobuf reader agrees with onnxruntime on every signature", async () => {
    for (const kind of ["flat", "conv", "cond", "m2", "kl"]) {
      for (const role of ["encoder", "decoder"]) {
        const bytes = readFileSync(at(kind, `${role}.onnx`));
        const model = readModel(bytes, role);
        const session = await ortNode.InferenceSession.create(bytes);
        assert.deepEqual(model.inputs.map((v) => v.name), session.inputNames);
        assert.deepEqual(model.outputs.map((v) => v.name), session.outputNames);
        if (session.inputMetadata) { // onnxruntime-common 1.21+
          for (const [mine, theirs] of [[model.inputs, session.inputMetadata], [model.outputs, session.outputMetadata]]) {
            assert.deepEqual(mine.map((v) => v.dims), theirs.map((v) => Array.from(v.shape)));
          }
        }
      }
    }
  });

  test("sample: shape, range, the same images for a seed, Number or BigInt", async () => {
    const a = await flat.sample(4, { seed: 3 });
    assert.deepEqual(a.dims, [4, 1, 28, 28]);
    assert.ok(inUnitRange(a));
    assert.deepEqual(a.data, (await flat.sample(4, { seed: 3n })).data);
    assert.notDeepEqual(a.data, (await flat.sample(4, { seed: 4 })).data);
    const fresh = await flat.sample(2);
    assert.deepEqual(fresh.dims, [2, 1, 28, 28]);
  });

  test("sample decodes priorLatents, the portable generator's z times the temperature", async () => {
    const z = await flat.priorLatents(3, { seed: 8, temperature: 0.5 });
    assert.deepEqual(z.data, scaled(normalLatents([3, 16], 8), 0.5).data);
    assert.deepEqual((await flat.sample(3, { seed: 8, temperature: 0.5 })).data, (await flat.decode(z)).data);
  });

  test("decode takes {data, dims}, nested lists and Float64 data alike", async () => {
    const z = normalLatents([2, 16], 1);
    const nested = [Array.from(z.data.subarray(0, 16)), Array.from(z.data.subarray(16))];
    const a = await flat.decode(z);
    assert.deepEqual((await flat.decode(nested)).data, a.data);
    assert.deepEqual((await flat.decode({ data: Float64Array.from(z.data), dims: [2, 16] })).data, a.data);
    assert.deepEqual((await flat.decode(new ortNode.Tensor("float32", z.data, [2, 16]))).data, a.data);
  });

  test("conditional: label, labels and one-hot y rows are one thing", async () => {
    const z = normalLatents([3, 8], 2);
    const byLabels = await cond.decode(z, { labels: [7, 7, 7] });
    assert.deepEqual((await cond.decode(z, { labels: 7 })).data, byLabels.data);
    const y = { data: new Float32Array(30).map((_, i) => (i % 10 === 7 ? 1 : 0)), dims: [3, 10] };
    assert.deepEqual((await cond.decode(z, { y })).data, byLabels.data);
    assert.deepEqual((await cond.sample(3, { seed: 2, label: 7 })).data, byLabels.data);
    assert.notDeepEqual((await cond.decode(z, { labels: 1 })).data, byLabels.data);
  });

  test("symbolic size: size given, the export size by default, and without it size required", async () => {
    assert.deepEqual((await conv.sample(2, { seed: 0, size: [32, 48] })).dims, [2, 1, 32, 48]);
    assert.deepEqual(sized.exportSize, [28, 28]);
    assert.deepEqual(sized.defaultSize, [28, 28]);
    assert.deepEqual((await sized.sample(1, { seed: 0 })).data, (await sized.sample(1, { seed: 0, size: [28, 28] })).data);
    assert.equal(unsized.exportSize, null);
    assert.equal(unsized.defaultSize, null);
    await fails(unsized.sample(1, { seed: 0 }), "size: this decoder has a symbolic image size and no recorded export " +
      "size; pass size=(height, width), multiples of 4");
    assert.deepEqual((await unsized.sample(1, { seed: 0, size: [8, 12] })).dims, [1, 1, 8, 12]);
    assert.deepEqual(unsized.latentShapeFor([8, 12]), [4, 2, 3]);
  });

  test("tiled decode: whole when the latent fits a tile, tiles beyond", async () => {
    const small = normalLatents([1, 4, 8, 8], 5);
    assert.deepEqual((await kl.decode(small, { tile: 8 })).data, (await kl.decode(small)).data);
    const big = normalLatents([1, 4, 16, 24], 5);
    const tiled = await kl.decode(big, { tile: 8 });
    assert.deepEqual(tiled.dims, [1, 3, 32, 48]);
    assert.ok(inUnitRange(tiled));
    const untiled = await kl.decode(big);
    const worst = tiled.data.reduce((m, v, i) => Math.max(m, Math.abs(v - untiled.data[i])), 0);
    assert.ok(worst < 0.5, `tiles blend into the untiled image (max difference ${worst})`);
  });

  test("interpolate: the ends are the ends, classes mix in step", async () => {
    const z0 = normalLatents([16], 1).data;
    const z1 = normalLatents([16], 2).data;
    const strip = await flat.interpolate(z0, z1, { steps: 5 });
    assert.deepEqual(strip.dims, [5, 1, 28, 28]);
    const ends = await flat.decode({ data: Float32Array.from([...z0, ...z1]), dims: [2, 16] });
    assert.deepEqual(strip.data.subarray(0, 784), ends.data.subarray(0, 784));
    assert.deepEqual(strip.data.subarray(4 * 784), ends.data.subarray(784));
    const c0 = normalLatents([8], 1).data;
    const classes = await cond.interpolate(c0, c0, { steps: 3, y0: 1, y1: 3 });
    const pure = await cond.decode({ data: Float32Array.from([...c0, ...c0]), dims: [2, 8] }, { labels: [1, 3] });
    assert.deepEqual(classes.data.subarray(0, 784), pure.data.subarray(0, 784));
    assert.deepEqual(classes.data.subarray(2 * 784), pure.data.subarray(784));
  });

  test("encoders, the classifier, and the model together", async () => {
    const x = { data: Float32Array.from({ length: 2 * 784 }, (_, i) => (i % 7) / 7), dims: [2, 1, 28, 28] };
    const encoder = await VAEEncoder.load(at("flat", "encoder.onnx"));
    const { mu, logvar } = await encoder.encode(x);
    assert.deepEqual(mu.dims, [2, 16]);
    assert.deepEqual(logvar.dims, [2, 16]);
    const { mu: spatial } = await (await VAEEncoder.load(at("conv", "encoder.onnx"))).encode(zeros(1, 1, 32, 24));
    assert.deepEqual(spatial.dims, [1, 4, 8, 6]);
    const classifier = await VAEClassifier.load(at("m2", "classifier.onnx"));
    const p = await classifier.classify(x);
    assert.deepEqual(p.dims, [2, 10]);
    assert.ok(Math.abs(p.data.subarray(0, 10).reduce((a, b) => a + b, 0) - 1) < 1e-6);
    assert.deepEqual((await classifier.logits(x)).dims, [2, 10]);

    const m2 = await VAE.open(at("m2"));
    assert.ok(m2.classifier);
    assert.deepEqual((await m2.reconstruct(x)).dims, [2, 1, 28, 28]);
    const scores = await m2.anomalyScore(x, { samples: 2, seed: 1 });
    assert.equal(scores.length, 2);
    assert.ok(scores.every(Number.isFinite));
    assert.deepEqual(await m2.anomalyScore(x, { samples: 2, seed: 1 }), scores);
    const model = await VAE.load(at("flat", "encoder.onnx"), at("flat", "decoder.onnx"));
    const seeded = await model.anomalyScore(x, { samples: 3, seed: 4 });
    const eps = normalLatents([3, 2, 16], 4);
    assert.deepEqual(await model.anomalyScore(x, { samples: 3, eps }), seeded);
    const condModel = await VAE.open(at("cond"));
    const marginal = await condModel.anomalyScore(x, { seed: 2 });
    const perClass = await Promise.all([...Array(10).keys()].map((c) => condModel.anomalyScore(x, { seed: 2, labels: c })));
    // -log mean_k exp(-L_k) lies between the best class's bound and it plus log K
    for (let i = 0; i < 2; i++) {
      const best = Math.min(...perClass.map((s) => s[i]));
      assert.ok(marginal[i] >= best - 1e-9 && marginal[i] <= best + Math.log(10) + 1e-9);
    }
  });

  test("graphs load from bytes, a file URL, and with the onnxruntime module passed in", async () => {
    const path = at("flat", "decoder.onnx");
    const z = normalLatents([1, 16], 0);
    const want = (await flat.decode(z)).data;
    const fromBytes = await VAEDecoder.load(new Uint8Array(readFileSync(path)), { name: "decoder bytes" });
    assert.equal(fromBytes.path, "decoder bytes");
    assert.deepEqual((await fromBytes.decode(z)).data, want);
    assert.deepEqual((await (await VAEDecoder.load(pathToFileURL(path))).decode(z)).data, want);
    assert.deepEqual((await (await VAEDecoder.load(path, { ort: ortNode, threads: 1 })).decode(z)).data, want);
  });

  test("onnxruntime-web (WebAssembly, what browsers run) on the same code: the same images within 1e-5", async () => {
    ortWeb.env.wasm.numThreads = 1;
    for (const [kind, options] of [["flat", {}], ["cond", { labels: [3, 8] }], ["kl", { size: [16, 24] }]]) {
      const web = await VAEDecoder.load(at(kind, "decoder.onnx"), { ort: ortWeb });
      const node = await VAEDecoder.load(at(kind, "decoder.onnx"));
      assert.deepEqual(web.latentShape, node.latentShape);
      const a = await web.sample(2, { seed: 7, ...options });
      const b = await node.sample(2, { seed: 7, ...options });
      assert.deepEqual(a.dims, b.dims);
      const worst = a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i])), 0);
      assert.ok(worst <= 1e-5, `${kind}: max difference ${worst}`);
    }
  });

  test("bad input: a RuntimeInputError with the Python runtime's words", async () => {
    const encoder = await VAEEncoder.load(at("conv", "encoder.onnx"));
    const model = await VAE.open(at("flat"));
    await fails(flat.decode(zeros(2, 31)), "z: expected shape [batch, 16], found [2, 31]");
    await fails(flat.decode(zeros(16)), "z: expected shape [batch, 16], found [16]");
    await fails(flat.decode({ data: new Float32Array(16).fill(NaN), dims: [1, 16] }), "z: contains NaN or Inf");
    await fails(flat.decode({ data: new Float32Array(16).fill(Infinity), dims: [1, 16] }), "z: contains NaN or Inf");
    await fails(flat.decode(zeros(0, 16)), "z: expected at least one item in the batch, found 0");
    await fails(conv.decode(zeros(1, 3, 2, 2)), "z: expected shape [batch, 4, latent_height, latent_width], found [1, 3, 2, 2]");
    await fails(cond.sample(2, { seed: 0, label: 10 }), "labels: expected class indices 0..9, found 10..10");
    await fails(cond.decode(zeros(2, 8), { labels: [3, -1] }), "labels: expected class indices 0..9, found -1..3");
    await fails(cond.sample(2, { seed: 0 }), "labels: this graph is conditional on 10 classes; pass labels= " +
      "(class indices) or y= (rows of class weights), one of them");
    await fails(flat.sample(2, { seed: 0, label: 1 }), "labels: this graph is not conditional (it takes no class)");
    await fails(conv.sample(1, { seed: 0, size: [30, 28] }), "size: expected (height, width), positive multiples of 4, found [30, 28]");
    await fails(conv.sample(1, { seed: 0, size: [28] }), "size: expected (height, width), positive multiples of 4, found [28]");
    await fails(flat.sample(1, { seed: 0, size: [56, 56] }), "size: this decoder makes [28, 28] images only, found [56, 56]");
    await fails(encoder.encode(zeros(1, 1, 30, 28)),
      "x: expected shape [batch, 1, height, width] (height and width multiples of 4), found [1, 1, 30, 28]");
    await fails(flat.sample(0, { seed: 0 }), "n: expected an integer from 1 to 65536, found 0");
    await fails(flat.sample(65537, { seed: 0 }), "n: expected an integer from 1 to 65536, found 65537");
    await fails(flat.sample(1, { seed: -1 }), "seed: expected an integer from 0 to 9223372036854775807, found -1");
    await fails(flat.sample(1, { seed: 0, temperature: 0 }), "temperature: expected a number in (0, 10], found 0");
    await fails(flat.interpolate(zeros(16), zeros(16), { steps: 1 }), "steps: expected an integer from 2 to 4096, found 1");
    await fails(kl.decode(zeros(1, 4, 16, 16), { tile: 0 }), "tile: expected an integer from 1 to 65536, found 0");
    await fails(flat.decode(zeros(1, 16), { tile: 8 }), "tile: tiled decoding needs a decoder with a symbolic size (--dynamic-size)");
    await fails(model.anomalyScore(zeros(1, 1, 28, 28), { samples: 0 }), "samples: expected an integer from 1 to 1024, found 0");
    await fails(model.classify(zeros(1, 1, 28, 28)),
      "classify: no classifier graph; pass classifier_path= (classifier.onnx of a semi-supervised model)");
    assert.throws(() => conv.latentDim, { message: "latent_dim: the latent [4, ?, ?] is not flat; use latent_shape" });
  });

  test("a graph that is not ours, or not this role, or not there", async () => {
    const notOurs = at("variants", "flat-not-ours.onnx");
    await fails(VAEDecoder.load(notOurs), `${notOurs}: not a vae-export graph (no vae_export.role, vae_export.latent_shape ` +
      "and vae_export.image_shape metadata); export it with vae-export");
    const encoder = at("flat", "encoder.onnx");
    await fails(VAEDecoder.load(encoder), `${encoder}: expected a decoder graph z -> x_hat, found x -> mu, logvar`);
    const missing = at("flat", "nothing.onnx");
    await fails(VAEDecoder.load(missing), `${missing}: file not found`);
    await assert.rejects(VAEDecoder.load(new Uint8Array([1, 2, 3])),
      (e) => e instanceof RuntimeInputError && /^<bytes>: ONNX Runtime cannot load it \(.+\)$/.test(e.message));
    await fails(VAEDecoder.load(42), "path: expected a file path, a URL or bytes, found int");
    await fails(VAE.load(at("flat", "encoder.onnx"), at("cond", "decoder.onnx")),
      `${at("cond", "decoder.onnx")}: the graphs disagree on the number of classes ([0, 10]); they are not from one model`);
  });
}
