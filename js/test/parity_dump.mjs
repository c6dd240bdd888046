// Runs a plan of calls on the package and writes what they return, for the cross-host parity
// test (tests/test_js_runtime.py), which makes the same calls in Python and compares:
//
//   node js/test/parity_dump.mjs PLAN.json OUT_DIR
//
// PLAN.json: {"fixtures": DIR, "calls": [{"id", "kind", "call", "args"}, ...]}, where `kind`
// names an artifacts directory under DIR (flat, conv, ...) and `call` one of: sample, decode,
// interpolate, encode, classify, reconstruct, anomaly, load, load-sample, pair (a VAE of two
// graphs), latent_dim, metadata (the codec on {"props": {...}}). `args` are the call's options
// by their Python names (the package uses the same ones) plus its positional arguments (n, z,
// z0, z1, x, path); a tensor is {"file": NAME, "dims": [...]} (raw float32 little-endian under
// OUT_DIR), {"zeros": dims} or {"full": [dims, value]} (value may be "nan"); a seed
// {"bigint": "digits"} is passed as a BigInt.
//
// OUT_DIR/results.json: {id: {"outputs": {name: {"file", "dims", "dtype"}}}, {"value": ...}
// (metadata) or {"error": "Name: message"}}; a sample also writes the latents it decoded
// (priorLatents with the same options).

import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { VAE, VAEClassifier, VAEDecoder, VAEEncoder, readMetadata } from "../src/index.js";

if (process.env.NODE_TEST_CONTEXT) {
  // `node --test` runs every .mjs under test/; this is a tool, not a test: nothing to do there.
  process.exit(0);
}

const [planPath, outDir] = process.argv.slice(2);
if (!planPath || !outDir) {
  console.error("usage: node parity_dump.mjs PLAN.json OUT_DIR");
  process.exit(2);
}
const plan = JSON.parse(await readFile(planPath, "utf8"));

async function value(v) {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
  if ("bigint" in v) return BigInt(v.bigint);
  if ("file" in v) {
    const bytes = await readFile(join(outDir, v.file));
    return { data: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4).slice(), dims: v.dims };
  }
  if (!("zeros" in v) && !("full" in v)) return v;
  const [dims, fill] = "zeros" in v ? [v.zeros, 0] : v.full;
  const count = dims.reduce((a, b) => a * b, 1);
  return { data: new Float32Array(count).fill(fill === "nan" ? NaN : fill), dims };
}

const cache = new Map();
async function open(kind, role) {
  const key = `${kind}/${role}`;
  if (!cache.has(key)) {
    const dir = join(plan.fixtures, kind);
    const load = { decoder: () => VAEDecoder.load(join(dir, "decoder.onnx")), encoder: () => VAEEncoder.load(join(dir, "encoder.onnx")),
      classifier: () => VAEClassifier.load(join(dir, "classifier.onnx")), vae: () => VAE.open(dir) }[role];
    cache.set(key, load());
  }
  return cache.get(key);
}

async function run({ kind, call, args }) {
  const a = {};
  for (const [k, v] of Object.entries(args ?? {})) a[k] = await value(v);
  const { n, z, z0, z1, x, path, ...options } = a;
  switch (call) {
    case "sample": {
      const decoder = await open(kind, "decoder");
      const { size, temperature } = options;
      const latents = await decoder.priorLatents(n, { seed: options.seed, size, temperature });
      return { images: await decoder.sample(n, options), latents };
    }
    case "decode": return { images: await (await open(kind, "decoder")).decode(z, options) };
    case "interpolate": return { images: await (await open(kind, "decoder")).interpolate(z0, z1, options) };
    case "encode": return (await open(kind, "encoder")).encode(x, options);
    case "classify": return { probabilities: await (await open(kind, "vae")).classify(x) };
    case "reconstruct": return { images: await (await open(kind, "vae")).reconstruct(x, options) };
    case "anomaly": {
      const scores = await (await open(kind, "vae")).anomalyScore(x, options);
      return { scores: { data: scores, dims: [scores.length] } };
    }
    case "pair": return void (await VAE.load(join(plan.fixtures, options.encoder), join(plan.fixtures, options.decoder)));
    case "load-sample": return void (await (await VAEDecoder.load(join(plan.fixtures, path))).sample(n, options));
    case "load": return void (await { decoder: VAEDecoder, encoder: VAEEncoder }[options.role ?? "decoder"].load(join(plan.fixtures, path)));
    case "latent_dim": return void (await open(kind, "decoder")).latentDim;
    case "metadata": return { value: readMetadata(options.props, "g.onnx") };
    default: throw new Error(`unknown call ${call}`);
  }
}

const results = {};
for (const entry of plan.calls) {
  try {
    const outputs = (await run(entry)) ?? {};
    if ("value" in outputs) {
      results[entry.id] = { value: outputs.value };
      continue;
    }
    results[entry.id] = { outputs: {} };
    for (const [name, t] of Object.entries(outputs)) {
      const file = `${entry.id}.${name}.js.bin`;
      const dtype = t.data instanceof Float64Array ? "float64" : "float32";
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      await writeFile(join(outDir, file), bytes);
      results[entry.id].outputs[name] = { file, dims: t.dims, dtype };
    }
  } catch (exc) {
    results[entry.id] = { error: `${exc.name}: ${exc.message}` };
  }
}
await writeFile(join(outDir, "results.json"), JSON.stringify(results, null, 1));
