// The one-file build of the package (js/scripts/bundle.mjs -> vae_export/webapp/vae-export-runtime.js,
// what `vae-export web` copies beside onnxruntime-web): current with src/, the same exports, the
// same generator bits, and (with VAE_EXPORT_FIXTURES) the same samples from a graph.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";

import * as ortNode from "onnxruntime-node";

import { OUT, bundle } from "../scripts/bundle.mjs";
import * as src from "../src/index.js";

const built = await import(OUT);

test("the committed bundle is src/'s (run `npm run bundle` after changing src/)", () => {
  assert.equal(readFileSync(OUT, "utf8"), bundle());
});

test("the bundle exports what src/index.js exports", () => {
  assert.deepEqual(Object.keys(built).sort(), Object.keys(src).sort());
  assert.deepEqual({ ...built.limits }, { ...src.limits });
  assert.equal(built.GENERATOR, src.GENERATOR);
});

test("the bundle's generator draws src's bits", () => {
  for (const seed of [0, 7, 2n ** 63n - 1n]) {
    assert.deepEqual(built.normalLatents([3, 4, 5], seed).data, src.normalLatents([3, 4, 5], seed).data);
  }
  assert.throws(() => built.normalLatents([1], -1), built.RuntimeInputError);
});

const FIXTURES = process.env.VAE_EXPORT_FIXTURES;
const skip = !FIXTURES && "VAE_EXPORT_FIXTURES is not set";
test("the bundle's decoder samples what src's does", { skip }, async () => {
  const path = join(resolve(FIXTURES), "conv", "decoder.onnx");
  const [a, b] = await Promise.all([built, src].map((m) => m.VAEDecoder.load(path, { ort: ortNode })));
  const options = { seed: 3, size: [32, 48] };
  assert.deepEqual((await a.sample(2, options)).data, (await b.sample(2, options)).data);
  await assert.rejects(a.sample(1, { seed: 0, size: [30, 48] }), built.RuntimeInputError);
});
