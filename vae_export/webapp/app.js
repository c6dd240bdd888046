// The VAE decoder in the browser, on the npm package vae-export-runtime (its one-file build,
// vae-export-runtime.js, which index.html's import map names) and onnxruntime-web (WebAssembly).
// The package reads decoder.onnx's own metadata (latent shape, image shape, stride, default
// size, classes), checks every call and draws the samples with the portable generator, so the
// grid for seed S is the Python runtime's `VAEDecoder(...).sample(16, seed=S)`. The page holds
// no copy of the contract, only what to show.
//
// Settings: page.json (written by `vae-export web`: {"size": [H, W] or null, the size to show a
// symbolic-size decoder at; null: the decoder's default size}), overridden by the query string:
// ?seed=S (the grid's seed, default 0) and ?size=HxW.
// window.vaeDemo exposes the state for tests: the decoder, the grid's seed and latents, the
// current z (and class row y), a decode counter, latencies; `error` when the page failed.
/* global ort */

import { VAEDecoder, limits } from "vae-export-runtime";

const status = document.getElementById("status");
const state = { ready: false, error: null, decodes: 0, latencies: [] };
window.vaeDemo = state;

try {
  await main();
} catch (exc) {
  // The package's errors name the rule (a size off the stride, a graph that is not ours, ...).
  state.error = `${exc.name}: ${exc.message}`;
  status.textContent = `Error: ${exc.message}`;
  status.classList.add("error");
  throw exc;
}

/** ?size=HxW as [H, W]; the package checks it against the decoder (latentShapeFor). */
function parseSize(text) {
  const m = /^(\d+)x(\d+)$/.exec(text.trim());
  if (!m) throw new Error(`?size=${text}: expected HxW, e.g. 32x48`);
  return [Number(m[1]), Number(m[2])];
}

/** ?seed=S: an integer from 0 to 2^63 - 1 (a BigInt past 2^53); the package checks the range. */
function parseSeed(text) {
  if (!/^\d+$/.test(text.trim())) throw new Error(`?seed=${text}: expected an integer from 0 to ${limits.MAX_SEED}`);
  const big = BigInt(text.trim());
  return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

async function main() {
  const params = new URLSearchParams(location.search);
  const page = await (await fetch("page.json")).json();
  const seed = params.has("seed") ? parseSeed(params.get("seed")) : 0;

  // One thread: multi-threaded WASM needs cross-origin isolation headers, which a plain static
  // host does not send. The runtime files sit beside this page (vendored, never from a CDN).
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = new URL("./", location.href).href;
  const decoder = await VAEDecoder.load("decoder.onnx", { ort, executionProviders: ["wasm"] });

  // What to draw, all from the graph: the latent of one image at the page's size ([latent] or
  // [c, h, w]), and the image (C channels, H x W; a symbolic-size decoder at any multiple of its
  // stride, by default the size it was exported at).
  const size = params.has("size") ? parseSize(params.get("size")) : page.size ?? undefined;
  const latentShape = decoder.latentShapeFor(size); // throws the package's message for a bad size
  const [H, W] = size ?? decoder.defaultSize;
  const C = decoder.imageShape[0];
  const L = latentShape.reduce((a, b) => a * b, 1);
  // A slider moves one latent value of a flat latent, or one whole channel of a spatial one.
  const plane = L / latentShape[0];
  const K = decoder.numClasses;
  const classNames = decoder.classNames.length ? decoder.classNames : Array.from({ length: K }, (_, k) => String(k));

  // A conditional decoder also takes y [batch, K]: a row of class weights summing to 1, here
  // (1 - mix) * onehot(class A) + mix * onehot(class B), the same row for every image of a call.
  const classRow = (a, b, mix) => {
    const y = new Float32Array(K);
    y[a] += 1 - mix;
    y[b] += mix;
    return y;
  };
  Object.assign(state, {
    decoder, seed, size: [H, W], latentShape, z: new Float32Array(L), y: K ? classRow(0, 0, 0) : null,
  });
  const latents = (data, n) => ({ data, dims: [n, ...latentShape] });
  const rows = (n) => {
    const y = new Float32Array(n * K);
    for (let i = 0; i < n; i++) y.set(state.y, i * K);
    return { data: y, dims: [n, K] };
  };
  // z ~ N(0, I) for n images from the portable generator: what decoder.sample(n, { seed }) decodes.
  const prior = async (n, s) => (await decoder.priorLatents(n, { seed: s, size })).data;

  async function decode(z, n) {
    const start = performance.now();
    const out = await decoder.decode(latents(z, n), K ? { y: rows(n) } : {});
    const ms = performance.now() - start;
    state.latencies.push({ batch: n, ms });
    state.decodes += 1;
    return out.data;
  }
  // One untimed run: the first call compiles and allocates, which is not what an app pays per decode.
  await decoder.decode(latents(new Float32Array(L), 1), K ? { y: rows(1) } : {});

  // Draw image i of a decoded batch at (x, y) of a canvas; greyscale for C = 1, else RGB.
  function draw(ctx, data, i, x, y) {
    const img = ctx.createImageData(W, H);
    const pixels = H * W;
    const base = i * C * pixels;
    for (let p = 0; p < pixels; p++) {
      const v = (c) => Math.round(255 * data[base + Math.min(c, C - 1) * pixels + p]);
      img.data[4 * p] = v(0);
      img.data[4 * p + 1] = v(1);
      img.data[4 * p + 2] = v(2);
      img.data[4 * p + 3] = 255;
    }
    ctx.putImageData(img, x, y);
  }

  // A canvas of tilesX x tilesY images, drawn `box` CSS pixels along its longer side and in the
  // images' aspect ratio along the other (a 32x48 image is drawn wide, never stretched square).
  function canvas(id, tilesX, tilesY, box) {
    const el = document.getElementById(id);
    el.width = W * tilesX;
    el.height = H * tilesY;
    const scale = box / Math.max(el.width, el.height);
    el.style.width = `${el.width * scale}px`;
    el.style.height = `${el.height * scale}px`;
    return el.getContext("2d");
  }

  const grid = canvas("grid", 4, 4, 448);
  const main = canvas("main", 1, 1, 224);
  const interp = canvas("interp", 1, 1, 224);

  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? s[Math.floor(s.length / 2)] : NaN;
  };
  function showLatency() {
    const by = (n) => median(state.latencies.filter((l) => l.batch === n).slice(-50).map((l) => l.ms));
    document.getElementById("latency").textContent =
      `batch 1: ${by(1).toFixed(2)} ms (median of last 50); batch 16: ${by(16).toFixed(2)} ms`;
  }

  // Sliders redraw live; a decode in flight makes later moves wait for the newest value only.
  let pending = false;
  let busy = false;
  async function redraw() {
    if (busy) {
      pending = true;
      return;
    }
    busy = true;
    const z = Float32Array.from(state.z); // the z this frame shows (the sliders may move meanwhile)
    const y = state.y && Float32Array.from(state.y);
    draw(main, await decode(z, 1), 0, 0, 0);
    state.shown = z;
    state.shownY = y;
    busy = false;
    showLatency();
    if (pending) {
      pending = false;
      redraw();
    }
  }

  const sliders = [];
  for (let i = 0; i < Math.min(8, latentShape[0]); i++) {
    const label = document.createElement("label");
    const input = Object.assign(document.createElement("input"), {
      type: "range", min: -3, max: 3, step: 0.05, value: 0, id: `slider-${i}`,
    });
    input.addEventListener("input", () => {
      state.z.fill(Number(input.value), i * plane, (i + 1) * plane);
      redraw();
    });
    label.append(plane > 1 ? `channel ${i}` : `z[${i}]`, input);
    document.getElementById("sliders").append(label);
    sliders.push(input);
  }

  // random: a fresh seed's z (shown, so the image can be remade anywhere with that seed).
  document.getElementById("random").addEventListener("click", async () => {
    const words = crypto.getRandomValues(new Uint32Array(2));
    const s = (words[0] & 0x1fffff) * 2 ** 32 + words[1]; // below 2^53: a plain Number
    state.z = await prior(1, s);
    state.zSeed = s;
    document.getElementById("z-seed").textContent = `z: sample(1, seed=${s})`;
    sliders.forEach((el, i) => { el.value = state.z[i * plane]; });
    redraw();
  });

  // Interpolation: walk from a to b, one decode per animation frame; the ends are the
  // generator's draws for the seeds after the grid's (seed + 1, seed + 2, ...).
  const seedAfter = (k) => (BigInt(seed) + BigInt(k)) % (limits.MAX_SEED + 1n);
  let next = 1;
  let a = await prior(1, seedAfter(next++));
  let b = await prior(1, seedAfter(next++));
  let t = 0;
  async function animate() {
    const z = a.map((v, k) => (1 - t) * v + t * b[k]);
    draw(interp, await decode(z, 1), 0, 0, 0);
    t += 0.02;
    if (t > 1) {
      t = 0;
      a = b;
      b = await prior(1, seedAfter(next++));
    }
    setTimeout(() => requestAnimationFrame(animate), 30);
  }

  state.gridLatents = await prior(16, seed);
  async function drawGrid() {
    const samples = await decode(state.gridLatents, 16);
    for (let i = 0; i < 16; i++) draw(grid, samples, i, (i % 4) * W, Math.floor(i / 4) * H);
  }

  if (K) {
    // Class A, class B and the mix between them; any change redraws the grid and the slider image.
    const controls = document.getElementById("classes");
    const select = (id) => {
      const el = Object.assign(document.createElement("select"), { id });
      classNames.forEach((name, k) => el.append(new Option(`${k}: ${name}`, k)));
      return el;
    };
    const classA = select("class-a");
    const classB = select("class-b");
    const mix = Object.assign(document.createElement("input"), {
      type: "range", min: 0, max: 1, step: 0.05, value: 0, id: "mix",
    });
    const update = async () => {
      state.y = classRow(Number(classA.value), Number(classB.value), Number(mix.value));
      await drawGrid();
      redraw();
    };
    [classA, classB].forEach((el) => el.addEventListener("change", update));
    mix.addEventListener("input", update);
    const row = (text, el) => {
      const l = document.createElement("label");
      l.append(text, el);
      return l;
    };
    controls.append(row("class", classA), row("mix towards", classB), row("mix", mix));
    controls.hidden = false;
  }

  await drawGrid();
  await redraw();
  document.getElementById("grid-seed").textContent = `sample(16, seed=${seed})`;
  status.textContent =
    `decoder.onnx loaded: latent [${latentShape.join(", ")}], image ${C}x${H}x${W}` +
    (decoder.stride ? ` (sizes: multiples of ${decoder.stride})` : "") +
    (K ? `, ${K} classes` : "") + `, onnxruntime-web ${ort.env.versions?.web ?? "?"}`;
  state.ready = true;
  requestAnimationFrame(animate);
}
