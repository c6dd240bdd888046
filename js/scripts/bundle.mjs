// The package as one ES module for pages without a bundler: `vae-export web` copies it beside
// onnxruntime-web, and it ships inside the Python wheel as vae_export/webapp/vae-export-runtime.js
// (package data), so the page needs no build step, at `vae-export web` time or in the browser.
//
//   node js/scripts/bundle.mjs            # (re)writes the bundle (npm run bundle)
//   node js/scripts/bundle.mjs --check    # exits 1 when the committed bundle is not js/src's
//
// Each module of src/ becomes a function scope run once, in dependency order, that returns its
// exports; `import { a, b as c } from "./m.js"` becomes `const { a, b: c } = __m;`, and
// src/index.js's re-exports become the bundle's exports. The source is kept as written (its
// comments included) so a stack trace in the page reads like the package. Only the import and
// export forms src/ uses are understood; anything else stops the script with the line.

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const JS = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SRC = join(JS, "src");
export const OUT = resolve(JS, "..", "vae_export", "webapp", "vae-export-runtime.js");

const IMPORT = /^import \{([^}]*)\} from "\.\/([\w-]+)\.js";$/;
const REEXPORT = /^export \{([^}]*)\} from "\.\/([\w-]+)\.js";$/;
const REEXPORT_ALL = /^export \* as (\w+) from "\.\/([\w-]+)\.js";$/;
const DECLARATION = /^export ((?:async )?function\*? |class |const |let )(\w+)/;

const binding = (name) => `__${name.replace(/-/g, "_")}`;
const names = (list) => list.split(",").map((s) => s.trim()).filter(Boolean);

function fail(file, n, line, why) {
  throw new Error(`${file}:${n + 1}: ${why}: ${line}`);
}

/** One module of src/ as a scope returning its exports; its dependencies, in import order. */
function transform(name) {
  const file = `${name}.js`;
  const lines = readFileSync(join(SRC, file), "utf8").split("\n");
  const deps = [];
  const exported = [];
  const body = lines.map((line, n) => {
    const imp = line.match(IMPORT);
    if (imp) {
      deps.push(imp[2]);
      const pairs = names(imp[1]).map((s) => s.replace(/^(\w+) as (\w+)$/, "$1: $2"));
      return `const { ${pairs.join(", ")} } = ${binding(imp[2])};`;
    }
    if (/^\s*import\b/.test(line)) fail(file, n, line, "an import form the bundler does not know");
    const decl = line.match(DECLARATION);
    if (decl) {
      exported.push(decl[2]);
      return line.slice("export ".length);
    }
    if (/^\s*export\b/.test(line)) fail(file, n, line, "an export form the bundler does not know");
    return line;
  });
  while (body.length && body[body.length - 1] === "") body.pop();
  const code = [`// ---- src/${file} ----`, `const ${binding(name)} = (() => {`, ...body,
    `return { ${exported.join(", ")} };`, "})();"].join("\n");
  return { deps, code };
}

/** The bundle's text: src/'s modules in dependency order, then index.js's exports. */
export function bundle() {
  const version = JSON.parse(readFileSync(join(JS, "package.json"), "utf8")).version;
  const index = readFileSync(join(SRC, "index.js"), "utf8").split("\n");
  const order = [];
  const seen = new Set();
  const visit = (name, path = []) => {
    if (path.includes(name)) throw new Error(`an import cycle: ${[...path, name].join(" -> ")}`);
    if (seen.has(name)) return;
    const module = transform(name);
    module.deps.forEach((d) => visit(d, [...path, name]));
    seen.add(name);
    order.push(module.code);
  };
  const exports = [];
  index.forEach((line, n) => {
    let m = line.match(REEXPORT);
    if (m) {
      visit(m[2]);
      exports.push(`export const { ${names(m[1]).map((s) => s.replace(/^(\w+) as (\w+)$/, "$1: $2")).join(", ")} } = ` +
        `${binding(m[2])};`);
      return;
    }
    m = line.match(REEXPORT_ALL);
    if (m) {
      visit(m[2]);
      exports.push(`export const ${m[1]} = Object.freeze(${binding(m[2])});`);
      return;
    }
    if (/^\s*(import|export)\b/.test(line)) fail("index.js", n, line, "index.js may only re-export");
  });
  const header = [
    `// vae-export-runtime ${version} (the npm package in js/ of the vae-export repository), as one ES module`,
    "// for pages without a bundler. GENERATED from js/src by js/scripts/bundle.mjs (npm run bundle): do not",
    "// edit; tests check it is js/src's. Node apps and bundlers use the package itself.",
    "",
  ];
  return [...header, ...order, "", "// ---- src/index.js ----", ...exports, ""].join("\n");
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const text = bundle();
  if (process.argv.includes("--check")) {
    let old = null;
    try {
      old = readFileSync(OUT, "utf8");
    } catch {
      // missing: stale
    }
    if (old !== text) {
      console.error(`${OUT} is not js/src's bundle: run \`node js/scripts/bundle.mjs\``);
      process.exit(1);
    }
  } else {
    writeFileSync(OUT, text);
    console.log(`wrote ${OUT} (${text.length} bytes)`);
  }
}
