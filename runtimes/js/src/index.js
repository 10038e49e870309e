export { Bundle, READS_FORMAT } from "./bundle.js";
export { PhiloxNormal, philox4x32 } from "./noise.js";
export { guidanceEmbedding, textToImage, toPixels } from "./pipeline.js";
export { SAMPLERS, makeSampler } from "./samplers.js";
export { ClipTokenizer } from "./tokenizer.js";
export { encodePng } from "./png.js";
