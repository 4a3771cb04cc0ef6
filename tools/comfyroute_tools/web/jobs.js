// Job state kept by the page, built from server messages. Pure functions only: no DOM here.

export const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);

const STATUS_WORDS = {
  submitting: "Sending…",
  queued: "Queued",
  running: "Running",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
  timed_out: "Timed out",
};

export function statusLabel(status) {
  return STATUS_WORDS[status] || String(status || "Unknown");
}

export function isTerminal(status) {
  return TERMINAL.has(status);
}

export function newJob(jobId, fields = {}) {
  return {
    job_id: jobId,
    workflow_id: null,
    status: "submitting",
    executor: null,
    error: null,
    message: null,
    duration: null,
    created_at: null, // server clock, seconds
    started_ms: null, // this browser's clock, when it sent run_job
    progress: new Map(), // node_id -> {progress, total}
    outputs: [],
    inputs: [], // the job's input files: {name, size, content_type}
    ...fields,
  };
}

function outputKey(o) {
  return [o.node_id, o.output_name, o.value && o.value.filename].join("\u0000");
}

function addOutput(job, output) {
  const key = outputKey(output);
  const at = job.outputs.findIndex((o) => outputKey(o) === key);
  // A reconnect may deliver the same output twice (push + get_job): keep one, the newest.
  if (at >= 0) job.outputs[at] = output;
  else job.outputs.push(output);
}

function ensure(jobs, jobId) {
  let job = jobs.get(jobId);
  if (!job) {
    job = newJob(jobId, { status: null }); // unknown until a message says
    jobs.set(jobId, job);
  }
  return job;
}

/** Merge a JobView (from get_job / list_jobs) into the map. */
export function applyJobView(jobs, view) {
  const job = ensure(jobs, view.job_id);
  Object.assign(job, {
    workflow_id: view.workflow_id ?? job.workflow_id,
    status: view.status,
    executor: view.executor ?? job.executor,
    error: view.error ?? null,
    message: view.message ?? null,
    duration: view.duration ?? job.duration,
    created_at: view.created_at ?? job.created_at,
    updated_at: view.updated_at ?? job.updated_at,
  });
  if (Array.isArray(view.outputs)) {
    job.outputs = [];
    for (const o of view.outputs) addOutput(job, o);
  }
  // A backend that does not list inputs yet sends none: keep what this page sent with the job.
  if (Array.isArray(view.inputs) && (view.inputs.length || !job.inputs.length)) {
    job.inputs = view.inputs.map((i) => ({ name: String(i.name), size: i.size, content_type: i.content_type }));
  }
  if (job.status === "completed") {
    for (const p of job.progress.values()) p.progress = p.total;
  }
  return job;
}

/**
 * Apply one server message. Returns {jobId, changed: "status"|"progress"|"output"|null} so the
 * page knows what to redraw and announce.
 */
export function applyMessage(jobs, msg) {
  switch (msg.type) {
    case "job_update": {
      const job = ensure(jobs, msg.job_id);
      const before = job.status;
      job.status = msg.status;
      if (msg.workflow_id) job.workflow_id = msg.workflow_id;
      if (msg.executor) job.executor = msg.executor;
      if (msg.error !== undefined) job.error = msg.error;
      if (msg.message !== undefined) job.message = msg.message;
      if (typeof msg.duration === "number") job.duration = msg.duration;
      if (msg.status === "completed") {
        for (const p of job.progress.values()) p.progress = p.total;
      }
      return { jobId: msg.job_id, changed: before !== msg.status ? "status" : "progress" };
    }
    case "node_progress": {
      const job = ensure(jobs, msg.job_id);
      if (!job.status) job.status = "running";
      job.progress.set(String(msg.node_id), { progress: Number(msg.progress) || 0, total: Number(msg.total) || 0 });
      if (job.status === "queued" || job.status === "submitting") job.status = "running";
      return { jobId: msg.job_id, changed: "progress" };
    }
    case "output_update": {
      const job = ensure(jobs, msg.job_id);
      if (!job.status) job.status = "running";
      addOutput(job, {
        node_id: msg.node_id,
        node_name: msg.node_name,
        output_name: msg.output_name,
        output_type: msg.output_type,
        value: msg.value,
      });
      return { jobId: msg.job_id, changed: "output" };
    }
    case "job":
      return { jobId: applyJobView(jobs, msg.job).job_id, changed: "status" };
    default:
      return { jobId: null, changed: null };
  }
}

/** Overall progress in [0, 1] from per-node progress, or null when nothing was reported. */
export function overallProgress(job) {
  if (job.status === "completed") return 1;
  const parts = [...job.progress.values()].filter((p) => p.total > 0);
  if (parts.length === 0) return null;
  const sum = parts.reduce((acc, p) => acc + Math.min(1, p.progress / p.total), 0);
  return sum / parts.length;
}

/** Seconds the job has taken so far (or took), from the best clock available. */
export function elapsedSeconds(job, nowMs) {
  if (isTerminal(job.status) && typeof job.duration === "number") return job.duration;
  if (isTerminal(job.status) && job.created_at && job.updated_at) return Math.max(0, job.updated_at - job.created_at);
  if (job.started_ms) return Math.max(0, (nowMs - job.started_ms) / 1000);
  if (job.created_at) return Math.max(0, nowMs / 1000 - job.created_at);
  if (typeof job.duration === "number") return job.duration;
  return null;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.floor(seconds % 60);
  if (m < 60) return `${m} min ${String(s).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

export function formatBytes(n) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// "node <id> (<class>): <message>", at the start of an item or after a heading ending in ": ".
const NODE_ITEM = /(?:^|:\s+)node\s+([^\s():;,]+)(?:\s+\(([^)]*)\))?(?::\s*|\s+)(.+)$/i;

/**
 * Split a backend error into a summary and list items. Validation failures list
 * `node <id> (<class>): <message>` items separated by "; " or newlines; each becomes
 * {nodeId, nodeClass, message}. Other items stay {message}. A heading before the first node
 * item ("ComfyUI rejected the prompt (400): Prompt outputs failed validation") is the summary.
 */
export function parseErrorText(text) {
  const raw = String(text || "").trim();
  if (!raw) return { summary: "", items: [] };
  const parts = raw
    .split(/\r?\n|;\s+/)
    .map((p) => p.trim())
    .filter(Boolean);
  let summary = "";
  const items = [];
  for (const part of parts) {
    const m = NODE_ITEM.exec(part);
    if (m) {
      const before = part.slice(0, m.index).trim();
      if (before && !summary && items.length === 0) summary = before;
      items.push({ nodeId: m[1], nodeClass: m[2] || "", message: m[3].trim() });
    } else {
      items.push({ message: part });
    }
  }
  if (items.length === 1 && !items[0].nodeId) return { summary: items[0].message, items: [] };
  // A plain first line followed by node items is their heading.
  if (!summary && items.length > 1 && !items[0].nodeId && items.slice(1).some((i) => i.nodeId)) {
    summary = items.shift().message.replace(/:$/, "");
  }
  return { summary, items };
}

/** A sentence for an `error` message; the backend's messages already name what is wrong. */
export function describeServerError(msg) {
  return String(msg.message || "The server refused the request.");
}
