// The Node side of benchmarks/js_vs_python.py: the npm package (js/src) on onnxruntime-node,
// one JSON request per line on stdin, one JSON answer per line on stdout.

import { createRequire } from "node:module";
import { createInterface } from "node:readline";

import { ORT_VERSION, VAEDecoder, normalLatents } from "../js/src/index.js";

// js/'s own onnxruntime-node (its node_modules), as the package would find it
const ort = createRequire(new URL("../js/package.json", import.meta.url))("onnxruntime-node");

const decoders = new Map();

async function time(request) {
  const { graph, batch, level, warmup, iterations } = request;
  if (!decoders.has(graph)) decoders.set(graph, await VAEDecoder.load(graph, { ort, threads: 1 }));
  const decoder = decoders.get(graph);
  const z = normalLatents([batch, ...decoder.latentShapeFor()], 0);
  let call;
  if (level === "decode") {
    call = () => decoder.decode(z);
  } else {
    const feeds = { z: new ort.Tensor("float32", z.data, z.dims) };
    call = () => decoder.session.run(feeds);
  }
  for (let i = 0; i < warmup; i++) await call();
  const ms = [];
  for (let i = 0; i < iterations; i++) {
    const start = process.hrtime.bigint();
    await call();
    ms.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return { ms };
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const request = JSON.parse(line);
  const answer = request.op === "versions"
    ? { host: `node ${process.versions.node}`, "onnxruntime-node": ort.env?.versions?.node ?? ORT_VERSION,
      package: "js/src" }
    : await time(request);
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
