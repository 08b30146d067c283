// A page's data (tb_attention/page.py writes it): base64 of deflate of
// [u32 little-endian length of the manifest][manifest JSON, UTF-8][blobs].
// Attention travels as the uint8 bytes a step stores on disk, compressed,
// never as JSON numbers; the browser inflates it (DecompressionStream), so a
// page needs no network and no decompressor of ours. Text (tokens, run names)
// only ever reaches the page inside this payload, never as HTML.
//
// The manifest: {format, state, views, steps, stats, compare, missing}, each
// step {run, tag, step, header, attention: {kind: [offset, length]},
// neurons: {kind: [[offset, length, scale, hasBias, softcap, sinks | null], ...per stored layer]}},
// offsets into the blobs; stats and compare are the routes' answers
// (docs/routes.md) keyed as MemoryData looks them up.

import { ApiError } from "./api.js";
import { decodeNeurons } from "./decode.js";
import { MemoryData } from "./memory.js";

export const PAYLOAD_FORMAT = 1;

/** base64 text -> bytes. */
export function fromBase64(text) {
  // native where the browser has it (Chromium 140+, Firefox 133+, Safari 18.2+):
  // the loop below costs ~10 ms of a 128-token page's first draw while cold
  if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(text);
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** zlib-deflated bytes -> bytes (the browser's DecompressionStream). */
export async function inflate(bytes) {
  if (typeof DecompressionStream === "undefined") {
    throw new Error("this browser cannot decompress the page's data (no DecompressionStream): open it in a current Chrome, Edge, Firefox or Safari");
  }
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Split inflated bytes into the manifest and the blobs.
 * @param {Uint8Array} bytes
 * @returns {{manifest: any, blobs: Uint8Array}}
 */
export function split(bytes) {
  if (bytes.length < 4) throw new Error("the page's data is truncated");
  const n = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  if (4 + n > bytes.length) throw new Error("the page's data is truncated");
  const manifest = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + n)));
  if (manifest.format !== PAYLOAD_FORMAT) {
    throw new Error(`this page's data is format ${manifest.format}; this viewer reads format ${PAYLOAD_FORMAT}`);
  }
  return { manifest, blobs: bytes.subarray(4 + n) };
}

/**
 * One stored layer's query/key blob (queries f16 [H,Tq,D], keys f16 [H,Tk,D],
 * masked u8 [Tq,Tk], bias f16 [H,Tq,Tk]) -> each head's `neurons` answer,
 * decoded when first asked for.
 */
function neuronHeads(target, layerId, layer, kind, blobs) {
  const [offset, length, scale, hasBias, softcap = 0, sinks = null] = layer;
  const H = kind.num_heads;
  const Tq = kind.query_tokens.length;
  const Tk = kind.key_tokens.length;
  const D = kind.head_dim;
  const blob = blobs.subarray(offset, offset + length);
  const q = Tq * D * 2;
  const k = Tk * D * 2;
  const b = hasBias ? Tq * Tk * 2 : 0;
  if (length !== H * (q + k + b) + Tq * Tk) throw new Error(`the ${kind.name} query/key vectors of layer ${layerId} have ${length} bytes, not what ${H} heads of ${Tq} x ${Tk} x ${D} need`);
  for (let h = 0; h < H; h++) {
    let decoded = null;
    Object.defineProperty(target, `${layerId},${h}`, {
      enumerable: true,
      get: () => {
        if (!decoded) {
          // the head's parts in the order of the `neurons` route's body
          const body = new Uint8Array(q + k + Tq * Tk + b);
          body.set(blob.subarray(h * q, (h + 1) * q), 0);
          body.set(blob.subarray(H * q + h * k, H * q + (h + 1) * k), q);
          body.set(blob.subarray(H * (q + k), H * (q + k) + Tq * Tk), q + k);
          if (hasBias) body.set(blob.subarray(H * (q + k) + Tq * Tk + h * b, H * (q + k) + Tq * Tk + (h + 1) * b), q + k + Tq * Tk);
          decoded = decodeNeurons(body.buffer, { Tq, Tk, D, scale, hasBias, softcap, sink: sinks ? sinks[h] : null });
        }
        return decoded;
      },
    });
  }
}

/** A manifest step -> MemoryData's step (attention and neurons as views on the blobs). */
function memoryStep(s, blobs) {
  const attention = {};
  const neurons = {};
  for (const kind of s.header.kinds) {
    const [offset, length] = s.attention[kind.name];
    attention[kind.name] = blobs.subarray(offset, offset + length);
    const layers = s.neurons && s.neurons[kind.name];
    if (layers) {
      neurons[kind.name] = {};
      layers.forEach((layer, i) => neuronHeads(neurons[kind.name], kind.layer_ids[i], layer, kind, blobs));
    }
  }
  return { run: s.run, tag: s.tag, step: s.step, header: s.header, attention, neurons };
}

/**
 * The page's data as the views' `Data` (memory.js): every step, and the
 * stats and compare answers computed when the page was written.
 * @param {{manifest: any, blobs: Uint8Array}} page
 */
export function pageData({ manifest, blobs }) {
  const compare = (tag, kind, a, b) => {
    const answer = manifest.compare[JSON.stringify([tag, kind, a.run, a.step, b.run, b.step])];
    if (!answer) return Promise.reject(new ApiError(404, manifest.missing || "this comparison is not in the page", "page"));
    if (answer.error) return Promise.reject(new ApiError(answer.error.status, answer.error.message, "page"));
    return Promise.resolve(answer);
  };
  return new MemoryData(manifest.steps.map((s) => memoryStep(s, blobs)), { stats: manifest.stats, compare });
}
