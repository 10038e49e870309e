// CLIP's byte-level BPE from the bundle's tokenizer/tokenizer.json (Hugging Face tokenizers format), padded as
// the manifest's text rule "clip-bpe-padded/v1" says. Our own small BPE: it reads the vocabulary and merges of
// the file and follows its normaliser (NFC, whitespace runs -> one space, lower case), CLIP's split pattern and
// GPT-2's byte-to-unicode map, as the tokenizers library does for this file.

const CLIP_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;

function bytesToUnicode() {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  }
  const map = new Array(256);
  bs.forEach((b, i) => { map[b] = String.fromCodePoint(cs[i]); });
  return map;
}

export class ClipTokenizer {
  /** `json`: the parsed tokenizer.json; `maxLength`, `padId`: the manifest's generation.text values. */
  constructor(json, { maxLength, padId }) {
    const model = json.model;
    if (model.type !== "BPE") throw new Error(`tokenizer model ${model.type}: this client reads CLIP's BPE only`);
    this.vocab = new Map(Object.entries(model.vocab));
    this.ranks = new Map();
    model.merges.forEach((m, i) => {
      const [a, b] = Array.isArray(m) ? m : m.split(" ");
      this.ranks.set(`${a} ${b}`, i);
    });
    this.suffix = model.end_of_word_suffix || "";
    this.unk = this.vocab.get(model.unk_token);
    const special = Object.fromEntries(json.added_tokens.map((t) => [t.content, t.id]));
    this.bos = special["<|startoftext|>"];
    this.eos = special["<|endoftext|>"];
    this.maxLength = maxLength;
    this.padId = padId ?? this.eos;
    this.byteMap = bytesToUnicode();
    this.cache = new Map();
  }

  bpe(word) {
    if (this.cache.has(word)) return this.cache.get(word);
    let parts = Array.from(word);
    parts[parts.length - 1] += this.suffix;
    while (parts.length > 1) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i < parts.length - 1; i++) {
        const r = this.ranks.get(`${parts[i]} ${parts[i + 1]}`);
        if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
      }
      if (best < 0) break;
      const [a, b] = [parts[best], parts[best + 1]];
      const merged = [];
      for (let i = 0; i < parts.length; i++) {
        if (i < parts.length - 1 && parts[i] === a && parts[i + 1] === b) { merged.push(a + b); i++; }
        else merged.push(parts[i]);
      }
      parts = merged;
    }
    const ids = parts.map((p) => this.vocab.get(p) ?? this.unk);
    this.cache.set(word, ids);
    return ids;
  }

  /** The ids of one text: <|startoftext|> ids <|endoftext|>, unpadded and uncut. */
  encode(text) {
    const normal = text.normalize("NFC").replace(/\s+/gu, " ").toLowerCase();
    const ids = [this.bos];
    for (const piece of normal.match(CLIP_SPLIT) || []) {
      const bytes = new TextEncoder().encode(piece);
      ids.push(...this.bpe(Array.from(bytes, (b) => this.byteMap[b]).join("")));
    }
    ids.push(this.eos);
    return ids;
  }

  /** int64 ids of shape [texts.length, maxLength]: cut to maxLength - 1 ids + <|endoftext|>, padded. */
  call(texts) {
    const out = new BigInt64Array(texts.length * this.maxLength).fill(BigInt(this.padId));
    texts.forEach((text, row) => {
      let ids = this.encode(text);
      if (ids.length > this.maxLength) ids = [...ids.slice(0, this.maxLength - 1), this.eos];
      ids.forEach((id, j) => { out[row * this.maxLength + j] = BigInt(id); });
    });
    return out;
  }
}
