// Text-to-image as the manifest's generation section states it (mode "text-to-image"), independent of where
// the graphs run: `run(name, feeds)` is the caller's (onnxruntime-node here, onnxruntime-web in a browser).

import { PhiloxNormal } from "./noise.js";
import { makeSampler } from "./samplers.js";

const f32 = Math.fround;

/** guidance-scale-embedding/v1, float32 throughout. */
export function guidanceEmbedding(guidance, dim) {
  const w = f32(f32(guidance - 1) * 1000), half = Math.floor(dim / 2);
  const step = f32(f32(Math.log(10000)) / (half - 1));
  const out = new Float32Array(dim);
  for (let k = 0; k < half; k++) {
    const e = f32(w * f32(Math.exp(f32(k * -step))));
    out[k] = Math.sin(e);
    out[half + k] = Math.cos(e);
  }
  return out;
}

/** round-half-up-uint8/v1: decoder output (1, 3, H, W) in about [-1, 1] -> RGB bytes, HWC. */
export function toPixels(sample, height, width) {
  const out = new Uint8Array(height * width * 3), plane = height * width;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const v = f32(f32(f32(sample[c * plane + i] + 1) * 127.5) + 0.5);
      out[i * 3 + c] = Math.min(Math.max(Math.floor(v), 0), 255);
    }
  }
  return out;
}

/**
 * One image. `manifest`: the parsed edgeldm.json; `tokenizer`: a ClipTokenizer; `run(component, feeds)`:
 * async, feeds name -> {type, data, dims}, returns name -> {data, dims}.
 */
export async function textToImage({ manifest, tokenizer, run, prompt, negativePrompt = "", steps, guidance, seed,
                                    height, width }) {
  const g = manifest.generation, image = manifest.image;
  if (!g) throw new Error("this bundle has no generation section (format < 3): re-export it with edgeldm >= 0.1");
  steps = steps ?? g.sampler.steps_default;
  guidance = guidance ?? g.guidance.scale_default;
  height = height ?? image.height;
  width = width ?? image.width;
  const f = image.vae_scale_factor;
  if (height % image.size_multiple || width % image.size_multiple) {
    throw new Error(`${width}x${height}: sides must be multiples of ${image.size_multiple}`);
  }
  const sampler = makeSampler(g.sampler);
  const plan = sampler.plan(steps);
  const noise = new PhiloxNormal(seed);
  const embedded = g.guidance.rule === "embedded";
  const cfg = !embedded && guidance > 1;
  // 1-2. tokens and text encoder: [unconditional, conditional] when classifier-free guidance applies
  const texts = cfg ? [negativePrompt || "", prompt] : [prompt];
  const ids = tokenizer.call(texts);
  const text = await run("text_encoder", {
    [g.text.encoder_input]: { type: "int64", data: ids, dims: [texts.length, tokenizer.maxLength] } });
  const hidden = text[g.text.encoder_output];
  // 3. initial latents
  const shape = [1, image.latent_channels, height / f, width / f];
  const size = shape.reduce((a, b) => a * b, 1);
  const sigma = f32(plan.initNoiseSigma);  // numpy casts the Python float to the array's float32
  let latents = Float32Array.from(noise.draw(size), (v) => f32(v * sigma));
  const cond = embedded ? guidanceEmbedding(guidance, g.guidance.embedding_dim) : null;
  // 4. denoise
  for (let i = 0; i < plan.timesteps.length; i++) {
    const x = sampler.scale(latents, plan, i);
    const batch = cfg ? 2 : 1;
    const sample = new Float32Array(size * batch);
    for (let b = 0; b < batch; b++) sample.set(x, b * size);
    const feeds = {
      sample: { type: "float32", data: sample, dims: [batch, ...shape.slice(1)] },
      timestep: { type: "float32", data: Float32Array.of(plan.timesteps[i]), dims: [] },
      encoder_hidden_states: { type: "float32", data: hidden.data, dims: hidden.dims },
    };
    if (cond) feeds[g.guidance.unet_input] = { type: "float32", data: cond, dims: [1, cond.length] };
    const out = (await run("unet", feeds)).out_sample.data;
    let eps = out;
    if (cfg) {  // float32 arithmetic, as numpy does it: u + g * (c - u)
      eps = new Float32Array(size);
      const s = f32(guidance);
      for (let k = 0; k < size; k++) eps[k] = f32(out[k] + f32(s * f32(out[size + k] - out[k])));
    }
    const fresh = sampler.needsNoise(plan, i) ? noise.draw(size) : null;
    latents = sampler.step(eps, latents, plan, i, fresh);
  }
  // 5. decode
  const sf = f32(image.scaling_factor);
  const z = Float32Array.from(latents, (v) => f32(v / sf));
  const decoded = await run("vae_decoder", { [g.decoder.input]: { type: "float32", data: z, dims: shape } });
  return { pixels: toPixels(decoded[g.decoder.output].data, height, width), height, width, latents };
}
