#!/usr/bin/env node
// edgeldm-js: the reference JavaScript client.
//   edgeldm-js run BUNDLE --prompt P [--negative-prompt N] [--steps S] [--guidance G] [--seed N]
//              [--height H --width W] [--no-verify] -o OUT.png
//   edgeldm-js tokenize BUNDLE TEXT...     (prints the padded ids as JSON, one row per text)
//   edgeldm-js noise SEED N                (prints the first N values of the seed's stream as JSON)
import { renameSync, writeFileSync, existsSync } from "node:fs";
import { dirname, basename, join } from "node:path";
import { parseArgs } from "node:util";

import { Bundle, PhiloxNormal, encodePng, textToImage } from "../src/index.js";

const USAGE = `usage:
  edgeldm-js run BUNDLE --prompt P [--negative-prompt N] [--steps S] [--guidance G] [--seed N]
                 [--height H] [--width W] [--no-verify] [--overwrite] -o OUT.png
  edgeldm-js tokenize BUNDLE TEXT...
  edgeldm-js noise SEED N`;

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

async function main(argv) {
  const [command, ...rest] = argv;
  if (!command || command === "--help" || command === "-h") { console.log(USAGE); return; }
  if (command === "noise") {
    const [seed, n] = rest;
    console.log(JSON.stringify(Array.from(new PhiloxNormal(BigInt(seed)).draw(Number(n)))));
    return;
  }
  if (command === "tokenize") {
    const [folder, ...texts] = rest;
    const bundle = new Bundle(folder, { verify: false });
    const ids = bundle.tokenizer.call(texts), L = bundle.tokenizer.maxLength;
    console.log(JSON.stringify(texts.map((_, r) => Array.from(ids.subarray(r * L, (r + 1) * L), Number))));
    return;
  }
  if (command !== "run") fail(`unknown command ${command}\n${USAGE}`);
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: {
    prompt: { type: "string" }, "negative-prompt": { type: "string" }, steps: { type: "string" },
    guidance: { type: "string" }, seed: { type: "string", default: "0" }, height: { type: "string" },
    width: { type: "string" }, output: { type: "string", short: "o" }, "no-verify": { type: "boolean" },
    overwrite: { type: "boolean" } } });
  if (positionals.length !== 1) fail(`run takes one BUNDLE\n${USAGE}`);
  if (!values.prompt) fail("--prompt is required");
  if (!values.output) fail("-o OUT.png is required");
  if (existsSync(values.output) && !values.overwrite) fail(`${values.output} exists (pass --overwrite)`);
  const num = (v, name) => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!Number.isFinite(x)) fail(`--${name} ${v} is not a number`);
    return x;
  };
  const bundle = new Bundle(positionals[0], { verify: !values["no-verify"] });
  const ort = (await import("onnxruntime-node")).default;
  const run = await bundle.runner(ort);
  const image = await textToImage({ manifest: bundle.manifest, tokenizer: bundle.tokenizer, run,
    prompt: values.prompt, negativePrompt: values["negative-prompt"], steps: num(values.steps, "steps"),
    guidance: num(values.guidance, "guidance"), seed: BigInt(values.seed), height: num(values.height, "height"),
    width: num(values.width, "width") });
  // atomic: a temporary beside the output, renamed into place
  const tmp = join(dirname(values.output), `.${basename(values.output)}.tmp-${process.pid}`);
  writeFileSync(tmp, encodePng(image.pixels, image.width, image.height));
  renameSync(tmp, values.output);
  process.stderr.write(`wrote ${values.output} (${image.width}x${image.height}, ${bundle.manifest.generation.sampler.name})\n`);
}

main(process.argv.slice(2)).catch((err) => fail(err.message));
