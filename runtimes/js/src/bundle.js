// Opening a bundle in Node: the manifest, the trust rule (every listed file's SHA-256; paths stay inside the
// bundle), the tokenizer and one onnxruntime-node session per component. Browser code would replace only this
// file (fetch + crypto.subtle + onnxruntime-web); pipeline.js, samplers.js, noise.js, tokenizer.js stay.

import { createHash } from "node:crypto";
import { readFileSync, realpathSync, statSync } from "node:fs";
import { join, resolve, sep } from "node:path";

import { ClipTokenizer } from "./tokenizer.js";

export const READS_FORMAT = 4;

function inside(root, rel) {
  if (rel.startsWith("/") || rel.includes("\\") || /^[A-Za-z]:/.test(rel) || rel.split("/").includes("..")) {
    throw new Error(`listed path ${JSON.stringify(rel)} leaves the bundle`);
  }
  const real = realpathSync(join(root, rel));
  if (real !== root && !real.startsWith(root + sep)) throw new Error(`listed path ${rel} resolves outside the bundle`);
  return real;
}

function sha256(path) {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

export class Bundle {
  /** Read and (unless verify is false) check every file the ONNX backend would open against edgeldm.json. */
  constructor(folder, { verify = true } = {}) {
    this.root = realpathSync(resolve(folder));
    const path = join(this.root, "edgeldm.json");
    try { statSync(path); } catch { throw new Error(`${folder} is not an edgeldm bundle: edgeldm.json is missing`); }
    this.manifest = JSON.parse(readFileSync(path, "utf8"));
    const m = this.manifest;
    if (m.format !== "edgeldm.bundle") throw new Error(`${path}: not an edgeldm bundle manifest`);
    if (m.format_version > READS_FORMAT) throw new Error(`${path}: format ${m.format_version}; this client reads up to ${READS_FORMAT}`);
    if (!m.generation) throw new Error(`${path}: format ${m.format_version} states no pipeline (generation): re-export it`);
    // format 4 states SDXL's second text encoder and added conditions; this client wires one encoder only
    const text = m.generation.text;
    if ((text.encoders && text.encoders.length > 1) || text.added_conditions) {
      throw new Error(`${path}: a ${m.family ?? "multi-encoder"} bundle (${(text.encoders ?? []).length} text encoders, ` +
                      "added UNet conditions); this client runs SD 1.x / 2.x bundles: use edgeldm's Python runtime");
    }
    this.graphs = {};
    const listed = { ...m.files, ...m.tokenizer.files };
    for (const [name, comp] of Object.entries(m.components)) {
      const onnx = comp.backends.onnx;
      if (!onnx) throw new Error(`component ${name} has no ONNX graph in this bundle`);
      Object.assign(listed, onnx.files);
      this.graphs[name] = Object.keys(onnx.files).find((f) => f.endsWith(".onnx"));
    }
    const bad = [];
    for (const [rel, digest] of Object.entries(listed)) {
      const real = inside(this.root, rel);
      if (verify && sha256(real) !== digest) bad.push(rel);
    }
    if (bad.length) throw new Error(`files differ from their digests in edgeldm.json: ${bad.join(", ")}`);
    const tok = JSON.parse(readFileSync(inside(this.root, m.generation.text.tokenizer), "utf8"));
    this.tokenizer = new ClipTokenizer(tok, { maxLength: m.generation.text.max_length,
                                              padId: m.generation.text.pad_token_id });
  }

  /** `run(component, feeds)` over onnxruntime-node sessions, opened on first use. */
  async runner(ort, options = {}) {
    const sessions = {};
    return async (name, feeds) => {
      sessions[name] ??= await ort.InferenceSession.create(join(this.root, this.graphs[name]),
                                                           { executionProviders: ["cpu"], ...options });
      const tensors = {};
      for (const [k, v] of Object.entries(feeds)) tensors[k] = new ort.Tensor(v.type, v.data, v.dims);
      const out = await sessions[name].run(tensors);
      return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, { data: t.data, dims: t.dims }]));
    };
  }
}
