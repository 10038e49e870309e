// Samplers of docs/bundle-format.md#samplers, from the manifest's generation.sampler.parameters. Tensors are
// Float32Array; the per-step arithmetic is float64 and each result is rounded to float32, as the Python
// runtime does. This client implements ddim, euler and lcm; a bundle naming another sampler is refused.

const f32 = Math.fround;

function linspace(a, b, n) {
  if (n === 1) return [a];
  const step = (b - a) / (n - 1);
  const out = Array.from({ length: n }, (_, i) => a + i * step);
  out[n - 1] = b;
  return out;
}

/** alphas_cumprod of the training schedule: float32 values, accumulated in float64. */
export function alphasCumprod(p) {
  const n = p.num_train_timesteps;
  let betas;
  if (p.trained_betas) betas = p.trained_betas.map(f32);
  else if (p.beta_schedule === "linear") betas = linspace(p.beta_start, p.beta_end, n).map(f32);
  else if (p.beta_schedule === "scaled_linear") {
    betas = linspace(Math.sqrt(p.beta_start), Math.sqrt(p.beta_end), n).map((b) => { const x = f32(b); return f32(x * x); });
  } else if (p.beta_schedule === "squaredcos_cap_v2") {
    const bar = (t) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
    betas = Array.from({ length: n }, (_, i) => f32(Math.min(1 - bar((i + 1) / n) / bar(i / n), 0.999)));
  } else throw new Error(`beta_schedule ${p.beta_schedule}: not implemented in this client`);
  if (p.rescale_betas_zero_snr) throw new Error("rescale_betas_zero_snr: not implemented in this client");
  const out = new Array(n);
  let acc = 1;
  for (let i = 0; i < n; i++) { acc *= f32(1 - betas[i]); out[i] = f32(acc); }
  return out;
}

function spacedTimesteps(spacing, nTrain, n, offset) {
  if (spacing === "leading") {
    const ratio = Math.floor(nTrain / n);
    return Array.from({ length: n }, (_, i) => Math.round((n - 1 - i) * ratio) + offset);
  }
  if (spacing === "trailing") {
    const ratio = nTrain / n, out = [];
    for (let t = nTrain; t > 0; t -= ratio) out.push(Math.round(t) - 1);  // numpy's float arange, then round
    return out;
  }
  if (spacing === "linspace") return linspace(0, nTrain - 1, n).reverse();
  throw new Error(`timestep_spacing ${spacing}: not implemented in this client`);
}

function predictX0(m, x, a, type) {
  const sa = Math.sqrt(a), sb = Math.sqrt(1 - a);
  if (type === "epsilon") return [(x - sb * m) / sa, m];
  if (type === "v_prediction") return [sa * x - sb * m, sa * m + sb * x];
  if (type === "sample") return [m, (x - sa * m) / sb];
  throw new Error(`prediction_type ${type}`);
}

function cleanX0(x0, p) {
  if (p.thresholding) throw new Error("thresholding: not implemented in this client");
  if (p.clip_sample) return Math.min(Math.max(x0, -p.clip_sample_range), p.clip_sample_range);
  return x0;
}

class DDIM {
  constructor(p) { this.p = p; this.table = alphasCumprod(p); }
  plan(n) {
    const p = this.p;
    const final = p.set_alpha_to_one ? 1 : this.table[0];
    const timesteps = spacedTimesteps(p.timestep_spacing, p.num_train_timesteps, n, p.steps_offset).map(Math.round);
    const step = Math.floor(p.num_train_timesteps / n);
    return { timesteps, initNoiseSigma: 1,
             alpha: timesteps.map((t) => this.table[t]),
             alphaPrev: timesteps.map((t) => (t - step >= 0 ? this.table[t - step] : final)) };
  }
  needsNoise() { return this.p.eta > 0; }
  scale(x) { return x; }
  step(out, x, plan, i, eps) {
    const p = this.p, a = plan.alpha[i], ap = plan.alphaPrev[i];
    const std = p.eta * Math.sqrt((1 - ap) / (1 - a) * (1 - a / ap));
    const next = new Float32Array(x.length);
    for (let k = 0; k < x.length; k++) {
      let [x0, e] = predictX0(out[k], x[k], a, p.prediction_type);
      x0 = cleanX0(x0, p);
      let v = Math.sqrt(ap) * x0 + Math.sqrt(1 - ap - std * std) * e;
      if (p.eta > 0) v += std * eps[k];
      next[k] = v;
    }
    return next;
  }
}

class Euler {
  constructor(p) {
    if (p.final_sigmas_type && p.final_sigmas_type !== "zero") throw new Error("final_sigmas_type: zero only");
    this.p = p;
    this.sigmas = alphasCumprod(p).map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
  }
  plan(n) {
    const p = this.p;
    let ts = p.timestep_spacing === "linspace" ? linspace(0, p.num_train_timesteps - 1, n).reverse()
      : spacedTimesteps(p.timestep_spacing, p.num_train_timesteps, n, p.steps_offset);
    ts = ts.map(f32);
    const last = this.sigmas.length - 1;
    const sig = ts.map((t) => {
      if (t >= last) return this.sigmas[last];  // numpy's interp at the right end
      const j = Math.floor(t);
      return f32((this.sigmas[j + 1] - this.sigmas[j]) * (t - j) + this.sigmas[j]);
    });
    sig.push(0);
    const max = Math.max(...sig);
    const init = ["linspace", "trailing"].includes(p.timestep_spacing) ? max : f32(Math.sqrt(f32(f32(max * max) + 1)));
    return { timesteps: ts, sigmas: sig, initNoiseSigma: init };
  }
  needsNoise() { return false; }
  scale(x, plan, i) {
    const s = plan.sigmas[i], d = Math.sqrt(s * s + 1);
    return Float32Array.from(x, (v) => v / d);
  }
  step(out, x, plan, i) {
    const s = plan.sigmas[i], sn = plan.sigmas[i + 1], type = this.p.prediction_type;
    const next = new Float32Array(x.length);
    for (let k = 0; k < x.length; k++) {
      const x0 = type === "epsilon" ? x[k] - s * out[k]
        : type === "v_prediction" ? out[k] * (-s / Math.sqrt(s * s + 1)) + x[k] / (s * s + 1) : out[k];
      next[k] = x[k] + (x[k] - x0) / s * (sn - s);
    }
    return next;
  }
}

class LCM {
  constructor(p) { this.p = p; this.table = alphasCumprod(p); }
  plan(n) {
    const p = this.p, k = Math.floor(p.num_train_timesteps / p.original_inference_steps);
    if (n > p.original_inference_steps) throw new Error(`${n} steps: at most original_inference_steps`);
    const origin = Array.from({ length: p.original_inference_steps }, (_, i) => (i + 1) * k - 1).reverse();
    const timesteps = Array.from({ length: n }, (_, i) => origin[Math.floor(i * (origin.length / n))]);
    const final = p.set_alpha_to_one ? 1 : this.table[0];
    const prev = [...timesteps.slice(1), timesteps[n - 1]];
    const scaled = timesteps.map((t) => t * p.timestep_scaling);
    return { timesteps, initNoiseSigma: 1,
             alpha: timesteps.map((t) => this.table[t]),
             alphaPrev: prev.map((t) => (t >= 0 ? this.table[t] : final)),
             cSkip: scaled.map((s) => 0.25 / (s * s + 0.25)),
             cOut: scaled.map((s) => s / Math.sqrt(s * s + 0.25)) };
  }
  needsNoise(plan, i) { return i < plan.timesteps.length - 1; }
  scale(x) { return x; }
  step(out, x, plan, i, eps) {
    const p = this.p, a = plan.alpha[i], ap = plan.alphaPrev[i], renoise = this.needsNoise(plan, i);
    const next = new Float32Array(x.length);
    for (let k = 0; k < x.length; k++) {
      const x0 = cleanX0(predictX0(out[k], x[k], a, p.prediction_type)[0], p);
      const d = plan.cOut[i] * x0 + plan.cSkip[i] * x[k];
      next[k] = renoise ? Math.sqrt(ap) * d + Math.sqrt(1 - ap) * eps[k] : d;
    }
    return next;
  }
}

export const SAMPLERS = { ddim: DDIM, euler: Euler, lcm: LCM };

export function makeSampler(spec) {
  const cls = SAMPLERS[spec.name];
  if (!cls) {
    throw new Error(`the bundle's sampler ${spec.name} (${spec.diffusers_class}) is not implemented in this client; ` +
      `it implements ${Object.keys(SAMPLERS).join(", ")} (docs/bundle-format.md#samplers)`);
  }
  return new cls(spec.parameters);
}
