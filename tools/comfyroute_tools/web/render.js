// DOM builders. Server text only ever lands in textContent or vetted URL attributes, never in
// innerHTML, so a hostile message cannot inject markup or script.

import { formatBytes, formatDuration, isTerminal, parseErrorText, statusLabel } from "./jobs.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "className") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

const SAFE_TYPE = /^[\w.+-]+\/[\w.+-]+$/;

/** Only URLs a page may load or link to: http(s), data and blob. */
export function safeUrl(uri) {
  try {
    const u = new URL(uri, document.baseURI);
    return ["http:", "https:", "data:", "blob:"].includes(u.protocol) ? u.href : null;
  } catch {
    return null;
  }
}

/** Where an output's bytes are: an inline data: URL when the server sent them, else its uri. */
export function outputUrl(value) {
  if (!value) return null;
  if (value.data) {
    const type = SAFE_TYPE.test(value.content_type || "") ? value.content_type : "application/octet-stream";
    return `data:${type};base64,${value.data}`;
  }
  return value.uri ? safeUrl(value.uri) : null;
}

export function outputKind(output) {
  const type = String((output.value && output.value.content_type) || "").toLowerCase();
  const declared = String(output.output_type || "").toLowerCase();
  if (type.startsWith("image/")) return "image";
  if (type.startsWith("video/")) return "video";
  if (type.startsWith("audio/")) return "audio";
  if (type.startsWith("text/") || type === "application/json" || declared === "text" || declared === "string") {
    return "text";
  }
  return "file";
}

function decodeBase64Text(data) {
  const bin = atob(data);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8").decode(bytes);
}

const TEXT_PREVIEW_CHARS = 20000;

async function fillText(pre, value) {
  try {
    let text;
    if (value.data) text = decodeBase64Text(value.data);
    else {
      const url = safeUrl(value.uri);
      if (!url) throw new Error("no URL");
      const res = await fetch(url);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      text = await res.text();
    }
    pre.textContent = text.length > TEXT_PREVIEW_CHARS ? text.slice(0, TEXT_PREVIEW_CHARS) + "\n…" : text;
  } catch {
    pre.textContent = "The text could not be shown here; use the download link.";
  }
}

export function renderOutput(output) {
  const value = output.value || {};
  const url = outputUrl(value);
  const kind = outputKind(output);
  const who = `${output.node_name || "node"} #${output.node_id}`;
  const label = `${value.filename || output.output_name} from ${who}`;
  const fig = el("figure", { className: `output output-${kind}`, "data-kind": kind });
  if (kind === "image" && url) {
    fig.append(el("img", { src: url, alt: `Output image ${label}`, loading: "lazy" }));
  } else if (kind === "video" && url) {
    fig.append(el("video", { src: url, controls: true, preload: "metadata", "aria-label": `Output video ${label}` }));
  } else if (kind === "audio" && url) {
    fig.append(el("audio", { src: url, controls: true, preload: "metadata", "aria-label": `Output audio ${label}` }));
  } else if (kind === "text") {
    const pre = el("pre", { className: "output-text", tabindex: "0", "aria-label": `Output text ${label}` });
    pre.textContent = "Loading…";
    fig.append(pre);
    fillText(pre, value);
  } else {
    fig.append(el("div", { className: "output-file", "aria-hidden": "true", text: "📄" }));
  }
  const caption = el("figcaption");
  caption.append(el("span", { className: "filename", text: value.filename || output.output_name }));
  caption.append(el("span", { className: "meta", text: ` · ${who} · ${formatBytes(value.size)}` }));
  if (url) {
    caption.append(
      " ",
      el("a", {
        href: url,
        download: value.filename || "output",
        className: "download",
        text: "Download",
        "aria-label": `Download ${value.filename || output.output_name}`,
        rel: "noopener",
      }),
    );
  } else {
    caption.append(el("span", { className: "meta", text: " · not available for download" }));
  }
  fig.append(caption);
  return fig;
}

/** Redraws only when the set of outputs changed: a redraw would restart players, reload
 * images and refetch text on every progress message. */
export function renderOutputs(container, outputs, emptyText = "No outputs yet.", jobId = "") {
  const keys = outputs.map((o) => [o.node_id, o.output_name, o.value && o.value.filename]);
  const signature = JSON.stringify([jobId, emptyText, keys]);
  if (container.dataset.signature === signature) return;
  container.dataset.signature = signature;
  container.replaceChildren(...outputs.map(renderOutput));
  if (outputs.length === 0) container.append(el("p", { className: "empty", text: emptyText }));
}

/** An error as a summary and a list (one item per node problem). */
export function renderError(container, text) {
  const { summary, items } = parseErrorText(text);
  container.replaceChildren();
  container.hidden = !summary && items.length === 0;
  if (container.hidden) return;
  const heading = summary || "The job failed:";
  // Backend messages often start lower-case ("local executor refused..."): it reads as a heading here.
  container.append(el("p", { className: "error-summary", text: heading[0].toUpperCase() + heading.slice(1) }));
  if (items.length) {
    const list = el("ul", { className: "error-list" });
    for (const item of items) {
      const li = el("li");
      if (item.nodeId) {
        li.dataset.nodeId = item.nodeId;
        li.append(el("strong", { text: `Node ${item.nodeId}${item.nodeClass ? ` (${item.nodeClass})` : ""}: ` }));
      }
      li.append(item.message);
      list.append(li);
    }
    container.append(list);
  }
}

export function renderProgress(container, job, classes) {
  const rows = [...job.progress.entries()].sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }));
  container.replaceChildren(
    ...rows.map(([nodeId, p]) => {
      const name = classes.get(nodeId);
      const text = `Node ${nodeId}${name ? ` · ${name}` : ""}`;
      const id = `node-progress-${nodeId.replace(/[^A-Za-z0-9_-]/g, "_")}`;
      const bar = el("progress", { id, max: p.total || 1, value: Math.min(p.progress, p.total || 1) });
      return el(
        "li",
        { className: "node-progress" },
        el("label", { for: id, text }),
        bar,
        el("span", { className: "count", text: p.total ? `${Math.round(p.progress)}/${Math.round(p.total)}` : "" }),
      );
    }),
  );
}

function when(job) {
  if (!job.created_at) return "";
  return new Date(job.created_at * 1000).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function renderHistory(list, jobs, viewJobId, onPick) {
  list.replaceChildren();
  if (jobs.length === 0) {
    list.append(el("li", { className: "empty", text: "No jobs yet." }));
    return;
  }
  for (const job of jobs) {
    const btn = el(
      "button",
      {
        type: "button",
        className: "history-item",
        "data-job-id": job.job_id,
        "data-status": job.status,
        "aria-current": job.job_id === viewJobId ? "true" : null,
      },
      el("span", { className: "history-name", text: job.workflow_id || job.job_id }),
      el("span", { className: `status status-${job.status}`, text: statusLabel(job.status) }),
      el("span", {
        className: "history-when",
        text: [when(job), isTerminal(job.status) ? formatDuration(job.duration) : ""].filter(Boolean).join(" · "),
      }),
    );
    btn.addEventListener("click", () => onPick(job.job_id));
    list.append(el("li", {}, btn));
  }
}

/** A job's input files: name, type and size, one item each. */
export function renderInputs(container, inputs) {
  const signature = JSON.stringify(inputs.map((i) => [i.name, i.size, i.content_type]));
  if (container.dataset.signature === signature) return;
  container.dataset.signature = signature;
  container.replaceChildren(
    ...inputs.map((i) =>
      el(
        "li",
        { className: "job-input", "data-name": i.name },
        el("span", { className: "filename", text: i.name }),
        el("span", { className: "meta", text: ` · ${i.content_type || "unknown type"} · ${formatBytes(i.size)}` }),
      ),
    ),
  );
}

const ATTACHMENT_WORDS = {
  ready: "Ready",
  reading: "Reading…",
  uploading: "Uploading…",
  uploaded: "Uploaded",
  inline: "Sent with the job",
  failed: "Failed",
};

/**
 * The files attached to the next run. Each item: an editable name (the one the workflow uses),
 * the file's own name, type and size, upload progress, its problem if any, and a Remove button.
 * `on.rename(index, name)` and `on.remove(index)` report the user's changes. Rebuilt only when
 * the set of files changes, so typing in a name field keeps its focus.
 */
export function renderAttachments(list, attachments, problems, on) {
  const signature = JSON.stringify(attachments.map((a) => a.key));
  if (list.dataset.signature !== signature) {
    list.dataset.signature = signature;
    list.replaceChildren(
      ...attachments.map((a, i) => {
        const base = `att-${a.key}`;
        const name = el("input", {
          id: `${base}-name`,
          className: "att-name",
          type: "text",
          value: a.name,
          spellcheck: "false",
          autocomplete: "off",
          "aria-describedby": `${base}-meta ${base}-error`,
        });
        name.addEventListener("input", () => on.rename(i, name.value));
        const remove = el("button", {
          type: "button",
          className: "small att-remove",
          text: "Remove",
          "aria-label": `Remove ${a.file.name}`,
        });
        remove.addEventListener("click", () => on.remove(i));
        return el(
          "li",
          { className: "attachment", "data-key": a.key },
          el("label", { for: `${base}-name`, text: `Name in the workflow for ${a.file.name}` }),
          el("div", { className: "att-row" }, name, remove),
          el("p", { id: `${base}-meta`, className: "att-meta" }),
          el("progress", { id: `${base}-progress`, className: "att-progress", max: "1", hidden: true, "aria-label": `Upload of ${a.file.name}` }),
          el("p", { id: `${base}-error`, className: "field-error att-error", hidden: true }),
        );
      }),
    );
  }
  attachments.forEach((a, i) => {
    const item = list.children[i];
    if (!item) return;
    const nameInput = item.querySelector(".att-name");
    if (nameInput.value !== a.name && document.activeElement !== nameInput) nameInput.value = a.name;
    const problem = problems.get(i) || a.error || "";
    if (problems.has(i)) nameInput.setAttribute("aria-invalid", "true");
    else nameInput.removeAttribute("aria-invalid");
    item.dataset.state = a.state;
    const words = a.state === "uploading" && a.total ? `Uploading ${Math.floor((100 * a.sent) / a.total)}%` : ATTACHMENT_WORDS[a.state];
    item.querySelector(".att-meta").textContent = `${a.file.name} · ${a.content_type} · ${formatBytes(a.file.size)} · ${words || ""}`;
    const bar = item.querySelector(".att-progress");
    bar.hidden = a.state !== "uploading";
    if (a.total) bar.value = a.sent / a.total;
    const err = item.querySelector(".att-error");
    err.hidden = !problem;
    err.textContent = problem;
  });
}
