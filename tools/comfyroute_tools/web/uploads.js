// Input files for a run and the uploads that carry them (no DOM here).
//
// A file reaches the executor under its name, the name the workflow uses (LoadImage's image).
// Small files ride in the run_job frame as base64, smallest first while the frame stays under
// API Gateway's 128 KB; the others are uploaded first: request_upload over the WebSocket, then
// one multipart POST of every `fields` entry and then `file` to the presigned URL (S3). A
// workflow whose frame would pass 128 KB goes the same way and runs by workflow_upload_id.

// Same rules as comfyroute/protocol.py.
export const INPUT_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9 ._()+,=@-]{0,127}$/;
export const MAX_MESSAGE_BYTES = 128 * 1024;
export const MAX_FILES = 32;
// Stands in for an upload id while a frame is measured: as long as any id the protocol admits.
export const PLACEHOLDER_UPLOAD_ID = "u".repeat(128);
export const WORKFLOW_FILENAME = "workflow.json";
export const WORKFLOW_CONTENT_TYPE = "application/json";

const CONTENT_TYPES = {
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  webp: "image/webp",
  gif: "image/gif",
  bmp: "image/bmp",
  tif: "image/tiff",
  tiff: "image/tiff",
  wav: "audio/wav",
  mp3: "audio/mpeg",
  flac: "audio/flac",
  ogg: "audio/ogg",
  m4a: "audio/mp4",
  aac: "audio/aac",
  mp4: "video/mp4",
  webm: "video/webm",
  mov: "video/quicktime",
  mkv: "video/x-matroska",
  json: "application/json",
};

const encoder = new TextEncoder();

export class UploadError extends Error {
  constructor(message, { code = null, status = null } = {}) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** Why `name` cannot name an input file, or null when it can. */
export function inputNameProblem(name) {
  if (typeof name !== "string" || name === "") return "Give the file the name the workflow uses, e.g. input.png.";
  if (!INPUT_NAME_PATTERN.test(name) || /[ .]$/.test(name)) {
    return "Use up to 128 letters, digits, spaces and . _ ( ) + , = @ -, starting with a letter, digit or _ (no folders).";
  }
  return null;
}

/** A safe input name made from a file's own name ("my photo?.png" -> "my photo_.png"). */
export function suggestInputName(filename) {
  let name = String(filename || "")
    .split(/[\\/]/)
    .pop()
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[^A-Za-z0-9 ._()+,=@-]/g, "_")
    .replace(/^[^A-Za-z0-9_]+/, "")
    .replace(/[ .]+$/, "");
  if (name.length > 128) {
    const dot = name.lastIndexOf(".");
    const ext = dot > 0 && name.length - dot <= 16 ? name.slice(dot) : "";
    name = name.slice(0, 128 - ext.length) + ext;
  }
  return inputNameProblem(name) ? "input" : name;
}

/** Problems of a list of {name}: each entry's own, and names given more than once (each of
 * those entries is marked, so the one just renamed shows it too). Map index -> text. */
export function namesProblems(files) {
  const out = new Map();
  const count = new Map();
  for (const f of files) count.set(f.name, (count.get(f.name) || 0) + 1);
  files.forEach((f, i) => {
    const own = inputNameProblem(f.name);
    if (own) out.set(i, own);
    else if (count.get(f.name) > 1) out.set(i, `Another file is also named “${f.name}”; each name must be unique.`);
  });
  return out;
}

export function guessContentType(file) {
  const ext = String(file.name || "").toLowerCase().split(".").pop();
  return CONTENT_TYPES[ext] || file.type || "application/octet-stream";
}

/** Bytes of the run_job frame that carries `data`, as the connection sends it. */
export function frameBytes(data) {
  return encoder.encode(JSON.stringify({ command: "run_job", data })).length;
}

export function base64Length(size) {
  return 4 * Math.ceil(size / 3);
}

/** Base64 of an ArrayBuffer, in chunks (String.fromCharCode on a big array overflows the stack). */
export function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** The files as refs: their upload id, or a placeholder for the ones still to upload. */
export function placeholderRefs(files) {
  return files.map((f) => ({ name: f.name, upload_id: f.upload_id || PLACEHOLDER_UPLOAD_ID }));
}

/**
 * Which files ride inline: the smallest first, while the frame stays within `limit`.
 * `files` are {name, size, content_type, read: async () => ArrayBuffer, upload_id?}: one with an
 * `upload_id` is already uploaded and stays so. `data` is the run_job data without files.
 * Returns {files: refs in the caller's order (a placeholder upload id for each one to upload),
 * uploads: their indices}. Only files that can fit are read.
 */
export async function planFiles(data, files, limit = MAX_MESSAGE_BYTES) {
  let refs = placeholderRefs(files);
  let size = frameBytes({ ...data, files: refs });
  const order = files
    .map((_, i) => i)
    .filter((i) => !files[i].upload_id)
    .sort((a, b) => files[a].size - files[b].size);
  const uploads = [];
  for (let n = 0; n < order.length; n += 1) {
    const i = order[n];
    const f = files[i];
    if (size + base64Length(f.size) > limit) {
      uploads.push(...order.slice(n));
      break;
    }
    const inline = { name: f.name, data: toBase64(await f.read()) };
    if (f.content_type && f.content_type !== "application/octet-stream") inline.content_type = f.content_type;
    const candidate = refs.slice();
    candidate[i] = inline;
    const grown = frameBytes({ ...data, files: candidate });
    if (grown > limit) {
      uploads.push(...order.slice(n));
      break;
    }
    refs = candidate;
    size = grown;
  }
  return { files: refs, uploads: uploads.sort((a, b) => a - b) };
}

function xmlText(doc, tag) {
  const node = doc.getElementsByTagName(tag)[0];
  return node ? node.textContent.trim() : null;
}

/**
 * S3's XML error (<Error><Code>…<Message>…) as {code, message, proposed, max, min}; only these
 * fields: others (StringToSign, SignatureProvided) can echo the request's signature.
 */
export function parseS3Error(text) {
  try {
    const doc = new DOMParser().parseFromString(String(text || ""), "application/xml");
    if (doc.getElementsByTagName("parsererror").length || !doc.getElementsByTagName("Error").length) return null;
    return {
      code: xmlText(doc, "Code"),
      message: xmlText(doc, "Message"),
      proposed: xmlText(doc, "ProposedSize"),
      max: xmlText(doc, "MaxSizeAllowed"),
      min: xmlText(doc, "MinSizeAllowed"),
    };
  } catch {
    return null;
  }
}

/** A sentence for a refused upload POST. */
export function describeRefusal(status, text, filename) {
  const err = parseS3Error(text);
  if (!err || !err.code) return `The upload of ${filename} was refused (HTTP ${status}).`;
  let detail = err.message || "";
  if (err.code === "EntityTooLarge" && err.proposed && err.max) {
    detail += ` (sent ${err.proposed} bytes; the upload admits at most ${err.max})`;
  } else if (err.code === "EntityTooSmall" && err.proposed && err.min) {
    detail += ` (sent ${err.proposed} bytes; the upload needs at least ${err.min})`;
  }
  return `The upload of ${filename} was refused (HTTP ${status} ${err.code})${detail ? `: ${detail}` : ""}.`;
}

function hostOf(url) {
  try {
    return new URL(url).host;
  } catch {
    return "the upload store";
  }
}

/**
 * POST `blob` to the presigned form in `ready` (upload_ready): every field, then `file`.
 * `onProgress(sent, total)` follows the bytes. Resolves when the store answers 2xx; rejects
 * with an UploadError naming the file (never the URL: its fields are a signature).
 */
export function postUpload(ready, blob, filename, onProgress = () => {}, XHR = globalThis.XMLHttpRequest) {
  return new Promise((resolve, reject) => {
    let url;
    try {
      url = new URL(ready.url);
    } catch {
      reject(new UploadError(`The upload of ${filename} has no usable URL.`));
      return;
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      reject(new UploadError(`The upload of ${filename} was refused: the upload URL is not http(s).`));
      return;
    }
    if (blob.size > ready.max_bytes) {
      reject(new UploadError(`${filename} is ${blob.size} bytes; the upload admits at most ${ready.max_bytes}.`));
      return;
    }
    const form = new FormData();
    for (const [k, v] of Object.entries(ready.fields || {})) form.append(k, v);
    form.append("file", blob, filename); // last: S3 ignores fields after the file
    const xhr = new XHR();
    xhr.open(ready.method || "POST", url.href);
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) onProgress(Math.min(blob.size, ev.loaded), blob.size);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(blob.size, blob.size);
        resolve();
      } else {
        const err = parseS3Error(xhr.responseText);
        reject(
          new UploadError(describeRefusal(xhr.status, xhr.responseText, filename), {
            code: err && err.code,
            status: xhr.status,
          }),
        );
      }
    };
    xhr.onerror = () => reject(new UploadError(`The upload of ${filename} could not reach ${hostOf(ready.url)}.`));
    xhr.ontimeout = () => reject(new UploadError(`The upload of ${filename} to ${hostOf(ready.url)} timed out.`));
    xhr.send(form);
  });
}

/**
 * Pairs request_upload commands with their upload_ready answers. One request at a time, so
 * a refusal (an `error` for request_upload) or an answer without `ref` is surely the pending one.
 */
export class UploadRequests {
  constructor(send, { timeoutMs = 30000 } = {}) {
    this.send = send; // (command, data) => boolean
    this.timeoutMs = timeoutMs;
    this.pending = null; // {ref, resolve, reject, timer}
    this.queue = Promise.resolve();
  }

  /** Resolves with the upload_ready message; rejects with an UploadError. */
  request(filename, contentType, size) {
    const run = () =>
      new Promise((resolve, reject) => {
        const ref = Math.random().toString(36).slice(2, 12);
        const timer = setTimeout(() => this.#settle(null, new UploadError("No answer to the upload request.")), this.timeoutMs);
        this.pending = { ref, resolve, reject, timer };
        if (!this.send("request_upload", { filename, content_type: contentType, size, ref })) {
          this.#settle(null, new UploadError("Not connected: the upload could not be requested."));
        }
      });
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => {});
    return result;
  }

  /** Feed every server message; returns true when it was an answer to a pending request. */
  handle(msg) {
    if (!this.pending) return false;
    if (msg.type === "upload_ready" && (!msg.ref || msg.ref === this.pending.ref)) {
      this.#settle(msg, null);
      return true;
    }
    if (msg.type === "error" && msg.request === "request_upload") {
      this.#settle(null, new UploadError(String(msg.message || "The upload was refused."), { code: msg.code }));
      return true;
    }
    return false;
  }

  /** The connection dropped: nothing pending will be answered. */
  fail(reason) {
    if (this.pending) this.#settle(null, new UploadError(reason));
  }

  #settle(value, error) {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(value);
  }
}
