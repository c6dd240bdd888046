// Types of vae-export-runtime (the JavaScript sources carry the same as JSDoc).

/** An image batch or a latent batch: row-major values and their dims (an onnxruntime Tensor is one). */
export interface Tensor {
  data: Float32Array;
  dims: number[];
}

/** What array arguments accept: a Tensor (or any {data, dims}), a typed array, nested arrays of numbers. */
export type ArrayInput =
  | { data: ArrayLike<number> | ArrayLike<bigint>; dims: readonly number[] }
  | ArrayLike<number>
  | readonly (readonly number[])[]
  | readonly number[][][]
  | readonly number[][][][];

/** A class index (every item), one per item, or rows of class weights via `y`. */
export type Labels = number | readonly number[] | Int32Array | ArrayInput;

/** A seed: a safe-integer Number or a BigInt, 0 .. 2^63 - 1. */
export type Seed = number | bigint;

/** A model: a path (Node), a URL, or the .onnx bytes. */
export type ModelSource = string | URL | Uint8Array | ArrayBuffer;

export interface LoadOptions {
  /** The onnxruntime module (onnxruntime-node or onnxruntime-web); default: chosen by the environment. */
  ort?: unknown;
  executionProviders?: unknown[];
  /** intra-op threads */
  threads?: number;
  /** How messages name a model given as bytes (default "<bytes>"). */
  name?: string;
  /** Passed to InferenceSession.create, over the package's defaults. */
  sessionOptions?: Record<string, unknown>;
}

/** What a graph's `vae_export.*` metadata says, typed (docs/contract.md, "Metadata"). */
export interface GraphMetadata {
  role: "encoder" | "decoder" | "classifier";
  latentShape: (number | null)[];
  imageShape: number[] | null;
  likelihood: "bernoulli" | "gaussian";
  variant: string;
  stride: number | null;
  exportSize: [number, number] | null;
  numClasses: number;
  classNames: string[];
  version: string;
  checkpointSha256: string;
  source: string;
  opset: string;
  exporter: string;
  extra: Record<string, string>;
}

export class VAEExportError extends Error {}
/** An argument or input that does not match the graph's contract; the message names the rule. */
export class RuntimeInputError extends VAEExportError {}

declare class Graph {
  static load<T extends typeof Graph>(this: T, src: ModelSource, options?: LoadOptions): Promise<InstanceType<T>>;
  readonly role: string;
  /** The file, URL or bytes' name, as messages show it. */
  readonly path: string;
  readonly meta: GraphMetadata;
  /** The graph's `vae_export.*` metadata as strings, without the prefix. */
  readonly metadata: Record<string, string>;
  readonly stride: number | null;
  readonly numClasses: number;
  readonly classNames: string[];
  release(): Promise<void>;
}

export class VAEDecoder extends Graph {
  /** [latent] or [c, h, w]; null where symbolic. */
  readonly latentShape: (number | null)[];
  readonly latentDim: number;
  /** [C, H, W]; H and W null for a symbolic size. */
  readonly imageShape: (number | null)[];
  readonly exportSize: [number, number] | null;
  readonly defaultSize: [number, number] | null;
  latentShapeFor(size?: [number, number]): number[];
  decode(z: ArrayInput, options?: {
    y?: ArrayInput; labels?: Labels; tile?: number; overlap?: number;
  }): Promise<Tensor>;
  priorLatents(n: number, options?: { seed?: Seed; size?: [number, number]; temperature?: number }): Promise<Tensor>;
  sample(n: number, options?: {
    seed?: Seed; size?: [number, number]; label?: number; labels?: Labels; temperature?: number;
  }): Promise<Tensor>;
  interpolate(z0: ArrayInput, z1: ArrayInput, options?: {
    steps?: number; y0?: number | ArrayInput; y1?: number | ArrayInput;
  }): Promise<Tensor>;
}

export class VAEEncoder extends Graph {
  encode(x: ArrayInput, options?: { y?: ArrayInput; labels?: Labels }): Promise<{ mu: Tensor; logvar: Tensor }>;
}

export class VAEClassifier extends Graph {
  logits(x: ArrayInput): Promise<Tensor>;
  classify(x: ArrayInput): Promise<Tensor>;
}

export class VAE {
  constructor(encoder: VAEEncoder, decoder: VAEDecoder, classifier?: VAEClassifier | null);
  static load(
    encoder: ModelSource, decoder: ModelSource, options?: LoadOptions & { classifier?: ModelSource },
  ): Promise<VAE>;
  static open(artifacts: string | URL, options?: LoadOptions & { variant?: string }): Promise<VAE>;
  readonly encoder: VAEEncoder;
  readonly decoder: VAEDecoder;
  readonly classifier: VAEClassifier | null;
  readonly numClasses: number;
  classify(x: ArrayInput): Promise<Tensor>;
  reconstruct(x: ArrayInput, options?: { y?: ArrayInput; labels?: Labels }): Promise<Tensor>;
  anomalyScore(x: ArrayInput, options?: {
    samples?: number; seed?: Seed | null; eps?: ArrayInput; y?: ArrayInput; labels?: Labels;
  }): Promise<Float64Array>;
}

export const GAUSSIAN_SIGMA: number;
export function negativeLogLikelihood(x: Float32Array, xHat: Float32Array, n: number, likelihood: string): Float64Array;

// The portable generator ("vae-export normal v1")
export const GENERATOR: string;
export function threefry2x32(k0: number, k1: number, c0: number, c1: number): [number, number];
export function ln(x: number): number;
export function normals(count: number, seed: Seed): Float64Array;
export function normalLatents(shape: readonly number[], seed: Seed): Tensor;
export function scaled(z: Tensor, temperature: number): Tensor;

export function readMetadata(props: Record<string, string>, where: string): GraphMetadata;
export function readModel(bytes: Uint8Array, where: string): {
  metadata: Record<string, string>;
  inputs: { name: string; type: string; dims: (number | string | null)[] | null }[];
  outputs: { name: string; type: string; dims: (number | string | null)[] | null }[];
};

export const DEFAULT_OVERLAP: number;
export function tileGeometry(tile: number, stride: number, overlap?: number): [number, number, number];
export function tiledDecode(
  decode: (part: Tensor) => Promise<Tensor>, z: Tensor, tile: number, stride: number, overlap?: number,
): Promise<Tensor>;

export const ORT_VERSION: string;
export const limits: {
  MAX_BATCH: number; MAX_STEPS: number; MAX_SAMPLES: number; MAX_SEED: bigint; MAX_ELEMENTS: number;
  MAX_TILE: number; MAX_TEMPERATURE: number; MAX_CLASSES: number; MAX_STRIDE: number; MAX_VALUE_CHARS: number;
};
