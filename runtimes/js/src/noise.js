// The portable seeded noise of edgeldm bundles (manifest generation.noise.generator =
// "philox4x32-10/box-muller/v1"; docs/bundle-format.md#noise): Philox4x32-10 in counter mode, Box–Muller in
// float64, rounded to float32. No BigInt: 32 x 32 -> 64-bit products are split into 16-bit halves, so the same
// code ports to any language with doubles.

const M0 = 0xd2511f53, M1 = 0xcd9e8d57, W0 = 0x9e3779b9, W1 = 0xbb67ae85;

/** [hi, lo] 32-bit words of a * b for uint32 a, b (every partial sum stays below 2^53: exact in doubles). */
function mulhilo(a, b) {
  const ah = a >>> 16, al = a & 0xffff, bh = b >>> 16, bl = b & 0xffff;
  const t = al * bl;
  const m = ah * bl + al * bh + Math.floor(t / 65536);
  const hi = (ah * bh + Math.floor(m / 65536)) >>> 0;
  const lo = Math.imul(a, b) >>> 0;
  return [hi, lo];
}

/** Philox4x32-`rounds` of one counter (four uint32) under a key (two uint32). */
export function philox4x32(counter, key, rounds = 10) {
  let [c0, c1, c2, c3] = counter.map((v) => v >>> 0);
  let [k0, k1] = key.map((v) => v >>> 0);
  for (let r = 0; r < rounds; r++) {
    if (r) { k0 = (k0 + W0) >>> 0; k1 = (k1 + W1) >>> 0; }  // bumped between rounds, not before the first
    const [hi0, lo0] = mulhilo(M0, c0);
    const [hi1, lo1] = mulhilo(M1, c2);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}

/** The stream of one seed (a Number below 2^53 or a BigInt below 2^64): call draw(n) for the next n values. */
export class PhiloxNormal {
  constructor(seed) {
    const s = BigInt(seed);
    if (s < 0n || s >= 1n << 64n) throw new RangeError(`seed ${seed}: the portable generator takes 0 <= seed < 2**64`);
    this.key = [Number(s & 0xffffffffn), Number(s >> 32n)];
    this.block = 0;  // below 2^53 for any image: the counter's high word stays Math.floor(block / 2^32)
  }

  draw(n) {
    const out = new Float32Array(n);
    const blocks = Math.ceil(n / 4);
    let k = 0;
    for (let b = 0; b < blocks; b++, this.block++) {
      const w = philox4x32([this.block >>> 0, Math.floor(this.block / 4294967296) >>> 0, 0, 0], this.key);
      for (let p = 0; p < 4; p += 2) {
        const u1 = (w[p] + 0.5) / 4294967296, u2 = (w[p + 1] + 0.5) / 4294967296;
        const r = Math.sqrt(-2 * Math.log(u1)), theta = 2 * Math.PI * u2;
        if (k < n) out[k++] = r * Math.cos(theta);
        if (k < n) out[k++] = r * Math.sin(theta);
      }
    }
    return out;
  }
}
