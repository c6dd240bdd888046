// Where graphs come from and what runs them: the bytes of a model (a path in Node, a URL or
// bytes anywhere) and the onnxruntime module (onnxruntime-node in Node, onnxruntime-web in
// browsers, or the one the caller passes). Module names are computed, not literal, so that a
// bundler building for the web never tries to pull in Node's modules or onnxruntime-node.

import { RuntimeInputError, VAEExportError } from "./errors.js";
import { typeName } from "./pyformat.js";

export const ORT_VERSION = "1.30.0"; // what package.json pins and the tests run on

const isNode = typeof process !== "undefined" && typeof process.versions?.node === "string";

/** @type {Promise<any> | null} */
let defaultOrt = null;

/**
 * The onnxruntime module to use: `given` when passed; else a page's global `ort` (the
 * onnxruntime-web script tag); else onnxruntime-node in Node, onnxruntime-web elsewhere.
 * @param {any} [given]
 */
export async function resolveOrt(given) {
  if (given) return given;
  if (globalThis.ort?.InferenceSession) return globalThis.ort;
  const name = isNode ? "onnxruntime-node" : "onnxruntime-web";
  defaultOrt ??= import(/* webpackIgnore: true */ /* @vite-ignore */ name).catch(() => {
    defaultOrt = null;
    throw new VAEExportError(`vae-export-runtime needs ${name} (npm install ${name}@${ORT_VERSION}), ` +
      "or pass the onnxruntime module as load(src, { ort })");
  });
  return defaultOrt;
}

/** The first line of an error's message (onnxruntime's can run to pages). */
export function firstLine(exc) {
  const text = String(exc?.message ?? exc).trim();
  return text.split("\n")[0] || (exc?.name ?? "Error");
}

/**
 * The model's bytes and how messages name it.
 * @param {string | URL | Uint8Array | ArrayBuffer} src a path (Node), a URL, or the bytes
 * @param {string} [name] how messages name bytes (default "<bytes>")
 * @returns {Promise<{ bytes: Uint8Array, where: string }>}
 */
export async function readSource(src, name) {
  if (src instanceof Uint8Array) return { bytes: src, where: name ?? "<bytes>" };
  if (src instanceof ArrayBuffer) return { bytes: new Uint8Array(src), where: name ?? "<bytes>" };
  const isUrlText = typeof src === "string" && /^[a-z][a-z0-9+.-]*:/i.test(src) && !/^[a-z]:[\\/]/i.test(src);
  if (src instanceof URL || isUrlText) {
    const url = new URL(String(src));
    if (url.protocol === "file:" && isNode) {
      const { fileURLToPath } = await import(/* webpackIgnore: true */ /* @vite-ignore */ "node:" + "url");
      return readFile(fileURLToPath(url));
    }
    return fetchBytes(url.href);
  }
  if (typeof src === "string") return isNode ? readFile(src) : fetchBytes(src);
  throw new RuntimeInputError(`path: expected a file path, a URL or bytes, found ${typeName(src)}`);
}

async function readFile(path) {
  const fs = await import(/* webpackIgnore: true */ /* @vite-ignore */ "node:" + "fs/promises");
  try {
    return { bytes: new Uint8Array(await fs.readFile(path)), where: path };
  } catch (exc) {
    if (exc?.code === "ENOENT" || exc?.code === "EISDIR" || exc?.code === "ENOTDIR") {
      throw new RuntimeInputError(`${path}: file not found`);
    }
    throw new VAEExportError(`${path}: cannot read it (${exc?.code ?? firstLine(exc)})`);
  }
}

async function fetchBytes(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (exc) {
    throw new VAEExportError(`${url}: cannot fetch it (${firstLine(exc)})`);
  }
  if (response.status === 404) throw new RuntimeInputError(`${url}: file not found`);
  if (!response.ok) throw new VAEExportError(`${url}: cannot fetch it (HTTP ${response.status})`);
  return { bytes: new Uint8Array(await response.arrayBuffer()), where: url };
}
