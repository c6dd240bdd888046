// The package's graphs: VAEDecoder, VAEEncoder, VAEClassifier and VAE, mirroring the Python
// runtime's vae_export_runtime/graphs.py call for call, check for check, message for message.
// The contract (inputs, latent shape, image shape, symbolic sizes, their stride and default
// size, classes) is read from the graph's own signature and metadata (metadata.js), and a graph
// that does not meet it is refused when it is opened. Images and latents are
// `{ data: Float32Array, dims: number[] }`, row-major (an onnxruntime Tensor is one too).
//
// Where the hosts differ: no run time limit here (onnxruntime's JavaScript API cannot stop a
// run in flight), and a JavaScript number 3.0 is the integer 3 (Python refuses floats as counts).

import { asTensor, checkCount, checkRows, checkTemperature, condition, labelRows } from "./checks.js";
import { firstLine, readSource, resolveOrt } from "./engine.js";
import { RuntimeInputError, VAEExportError } from "./errors.js";
import { MAX_BATCH, MAX_ELEMENTS, MAX_SAMPLES, MAX_STEPS, MAX_TILE } from "./limits.js";
import { PREFIX, readMetadata } from "./metadata.js";
import { readModel } from "./onnxproto.js";
import { formatShape, pyList, pyRepr, typeName } from "./pyformat.js";
import { freshSeed, normalLatents, scaled, seedKey } from "./sampling.js";
import { DEFAULT_OVERLAP, tileGeometry, tiledDecode } from "./tiling.js";

const LOG_EPS = 1e-7; // clamps probabilities away from 0 and 1 inside log()
// `gaussian` graphs (diffusers' autoencoders): unit variance in their native [-1, 1] range,
// sigma 0.5 in the graphs' [0, 1] pixels (the Python runtime's GAUSSIAN_SIGMA).
export const GAUSSIAN_SIGMA = 0.5;

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

export class VAEDecoder extends Graph {
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

export class VAEEncoder extends Graph {
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

export class VAEClassifier extends Graph {
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
export function negativeLogLikelihood(x, xHat, n, likelihood) {
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
export class VAE {
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
