// The VAE decoder in the browser: z (, y) -> x_hat with onnxruntime-web (WebAssembly backend).
// window.vaeDemo exposes the state for tests: the current z (and class row y), a decode
// counter, latencies.
/* global ort */

const contract = await (await fetch("contract.json")).json();
const [C, H, W] = contract.image_shape;
// The latent of one image: [latent] (flat) or [c, h, w] (spatial, at the page's image size).
const latentShape = contract.latent_shape;
const L = latentShape.reduce((a, b) => a * b, 1);
// A slider moves one latent value of a flat latent, or one whole channel of a spatial one.
const plane = L / latentShape[0];

// One thread: multi-threaded WASM needs cross-origin isolation headers, which a plain static
// host does not send. The runtime files sit beside this page (vendored, never from a CDN).
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = new URL("./", location.href).href;
const session = await ort.InferenceSession.create("decoder.onnx", { executionProviders: ["wasm"] });

// A conditional decoder also takes y [batch, K]: a row of class weights summing to 1, here
// (1 - mix) * onehot(class A) + mix * onehot(class B), the same row for every image of a call.
const K = contract.num_classes || 0;
const classRow = (a, b, mix) => {
  const y = new Float32Array(K);
  y[a] += 1 - mix;
  y[b] += mix;
  return y;
};
const state = { z: new Float32Array(L), y: K ? classRow(0, 0, 0) : null, decodes: 0, latencies: [], ready: false };
const feeds = (z, n) => {
  const f = { z: new ort.Tensor("float32", z, [n, ...latentShape]) };
  if (K) {
    const rows = new Float32Array(n * K);
    for (let i = 0; i < n; i++) rows.set(state.y, i * K);
    f.y = new ort.Tensor("float32", rows, [n, K]);
  }
  return f;
};
// One untimed run: the first call compiles and allocates, which is not what an app pays per decode.
await session.run(feeds(new Float32Array(L), 1));
window.vaeDemo = state;

// Seeded normal samples (mulberry32 + Box-Muller), so a page load is reproducible.
function rng(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}
const normal = rng(1);
const randomZ = (n) => Float32Array.from({ length: n * L }, normal);

async function decode(z, n) {
  const start = performance.now();
  const out = await session.run(feeds(z, n));
  const ms = performance.now() - start;
  state.latencies.push({ batch: n, ms });
  state.decodes += 1;
  return out.x_hat.data;
}

// Draw image i of a decoded batch at (x, y) of a canvas; greyscale for C = 1, else RGB.
function draw(ctx, data, i, x, y) {
  const img = ctx.createImageData(W, H);
  const plane = H * W;
  const base = i * C * plane;
  for (let p = 0; p < plane; p++) {
    const v = (c) => Math.round(255 * data[base + Math.min(c, C - 1) * plane + p]);
    img.data[4 * p] = v(0);
    img.data[4 * p + 1] = v(1);
    img.data[4 * p + 2] = v(2);
    img.data[4 * p + 3] = 255;
  }
  ctx.putImageData(img, x, y);
}

function canvas(id, tilesX, tilesY) {
  const el = document.getElementById(id);
  el.width = W * tilesX;
  el.height = H * tilesY;
  return el.getContext("2d");
}

const grid = canvas("grid", 4, 4);
const main = canvas("main", 1, 1);
const interp = canvas("interp", 1, 1);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

function showLatency() {
  const by = (n) => median(state.latencies.filter((l) => l.batch === n).slice(-50).map((l) => l.ms));
  document.getElementById("latency").textContent =
    `batch 1: ${by(1).toFixed(2)} ms (median of last 50); batch 16: ${by(16).toFixed(2)} ms`;
}

// Sliders redraw live; a decode in flight makes later moves wait for the newest value only.
let pending = false;
let busy = false;
async function redraw() {
  if (busy) { pending = true; return; }
  busy = true;
  const z = Float32Array.from(state.z);  // the z this frame shows (the sliders may move meanwhile)
  const y = state.y && Float32Array.from(state.y);
  draw(main, await decode(z, 1), 0, 0, 0);
  state.shown = z;
  state.shownY = y;
  busy = false;
  showLatency();
  if (pending) { pending = false; redraw(); }
}

const sliders = [];
for (let i = 0; i < contract.sliders; i++) {
  const label = document.createElement("label");
  const input = Object.assign(document.createElement("input"), {
    type: "range", min: -3, max: 3, step: 0.05, value: 0, id: `slider-${i}`,
  });
  input.addEventListener("input", () => { state.z.fill(Number(input.value), i * plane, (i + 1) * plane); redraw(); });
  label.append(plane > 1 ? `channel ${i}` : `z[${i}]`, input);
  document.getElementById("sliders").append(label);
  sliders.push(input);
}

document.getElementById("random").addEventListener("click", () => {
  state.z = randomZ(1);
  sliders.forEach((s, i) => { s.value = state.z[i * plane]; });
  redraw();
});

// Interpolation: walk from a to b and back, one decode per animation frame.
let a = randomZ(1), b = randomZ(1), t = 0;
async function animate() {
  const z = a.map((v, k) => (1 - t) * v + t * b[k]);
  draw(interp, await decode(z, 1), 0, 0, 0);
  t += 0.02;
  if (t > 1) { t = 0; a = b; b = randomZ(1); }
  setTimeout(() => requestAnimationFrame(animate), 30);
}

const gridZ = randomZ(16);
async function drawGrid() {
  const samples = await decode(gridZ, 16);
  for (let i = 0; i < 16; i++) draw(grid, samples, i, (i % 4) * W, Math.floor(i / 4) * H);
}

if (K) {
  // Class A, class B and the mix between them; any change redraws the grid and the slider image.
  const controls = document.getElementById("classes");
  const select = (id) => {
    const el = Object.assign(document.createElement("select"), { id });
    contract.class_names.forEach((name, k) => el.append(new Option(`${k}: ${name}`, k)));
    return el;
  };
  const classA = select("class-a"), classB = select("class-b");
  const mix = Object.assign(document.createElement("input"), { type: "range", min: 0, max: 1, step: 0.05, value: 0, id: "mix" });
  const update = async () => {
    state.y = classRow(Number(classA.value), Number(classB.value), Number(mix.value));
    await drawGrid();
    redraw();
  };
  [classA, classB].forEach((el) => el.addEventListener("change", update));
  mix.addEventListener("input", update);
  const row = (text, el) => { const l = document.createElement("label"); l.append(text, el); return l; };
  controls.append(row("class", classA), row("mix towards", classB), row("mix", mix));
  controls.hidden = false;
}

await drawGrid();
await redraw();
document.getElementById("status").textContent =
  `decoder.onnx loaded: latent [${latentShape.join(", ")}], image ${C}x${H}x${W}` +
  (K ? `, ${K} classes` : "") + `, onnxruntime-web ${contract.onnxruntime_web}`;
state.ready = true;
requestAnimationFrame(animate);
