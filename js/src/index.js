// vae-export-runtime: run the graphs vae-export exports, in Node (onnxruntime-node) and in
// browsers (onnxruntime-web), with the same contract, checks and seeded samples as the Python
// runtime (pip install vae-export-runtime).
//
//   import { VAEDecoder } from "vae-export-runtime";
//   const decoder = await VAEDecoder.load("artifacts/decoder.onnx");
//   const images = await decoder.sample(16, { seed: 0 }); // { data: Float32Array, dims: [16, 1, 28, 28] }

export { VAE, VAEClassifier, VAEDecoder, VAEEncoder, GAUSSIAN_SIGMA, negativeLogLikelihood } from "./graphs.js";
export { RuntimeInputError, VAEExportError } from "./errors.js";
export { GENERATOR, ln, normalLatents, normals, scaled, threefry2x32 } from "./sampling.js";
export { readMetadata } from "./metadata.js";
export { readModel } from "./onnxproto.js";
export { DEFAULT_OVERLAP, tileGeometry, tiledDecode } from "./tiling.js";
export { ORT_VERSION } from "./engine.js";
export * as limits from "./limits.js";
