// Workflow files and this browser's index of saved workflows.
//
// The protocol has save_workflow but no list_workflows/get_workflow, so the browser keeps its
// own index (id, name, kind, settings) plus a copy of each workflow body in localStorage. A
// workflow whose body could not be cached (quota) can still be run by its workflow_id: the
// backend has the saved copy.

// Same alphabets as comfyroute/protocol.py.
export const WORKFLOW_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
export const ENDPOINT_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const DEFAULT_SETTINGS = Object.freeze({ comfy_executor: "local", runpod_endpoint_id: "" });

export class WorkflowFileError extends Error {}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** True for a ComfyUI API-format prompt: {node_id: {class_type, inputs}, ...}. */
export function isApiPrompt(obj) {
  if (!isObject(obj)) return false;
  const entries = Object.entries(obj);
  return entries.length > 0 && entries.every(([, n]) => isObject(n) && typeof n.class_type === "string");
}

/** ComfyUI's editor workflow (workflow.json as its Save writes it): LiteGraph nodes[] and links[].
 * It is sent as it is (`workflow`); the backend converts it with its executor's /object_info. */
export function isComfyEditorFormat(obj) {
  return Array.isArray(obj.nodes) && Array.isArray(obj.links) && !Array.isArray(obj.edges);
}

export function randomId(prefix) {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return prefix + "-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A protocol-safe workflow id: the file's own id when valid, else a slug of its name, else random. */
export function workflowIdFor(candidateId, name) {
  if (typeof candidateId === "string" && WORKFLOW_ID_PATTERN.test(candidateId)) return candidateId;
  const slug = String(name || "")
    .toLowerCase()
    .replace(/[^a-z0-9_.:-]+/g, "-")
    .replace(/^[^a-z0-9]+/, "")
    .replace(/-+$/, "")
    .slice(0, 100);
  return slug && WORKFLOW_ID_PATTERN.test(slug) ? slug : randomId("wf");
}

function stem(filename) {
  return String(filename || "").replace(/\.[^.]*$/, "");
}

function pickSettings(raw) {
  if (!isObject(raw)) return {};
  const out = {};
  if (raw.comfy_executor === "local" || raw.comfy_executor === "runpod") out.comfy_executor = raw.comfy_executor;
  if (typeof raw.runpod_endpoint_id === "string") out.runpod_endpoint_id = raw.runpod_endpoint_id.trim();
  return out;
}

/**
 * Parse a workflow file's text.
 * Returns {id, name, kind: "graph"|"prompt"|"workflow", body, settings}; throws WorkflowFileError naming
 * what is wrong in words a user can act on.
 */
export function parseWorkflowFile(text, filename) {
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new WorkflowFileError(`${filename || "The file"} is not valid JSON (${err.message}).`);
  }
  if (!isObject(obj)) {
    throw new WorkflowFileError(`${filename || "The file"} must contain a JSON object.`);
  }
  const name = (typeof obj.name === "string" && obj.name.trim()) || stem(filename) || "Untitled workflow";
  const settings = pickSettings(obj.settings);

  let kind;
  let body;
  if (isComfyEditorFormat(obj)) {
    kind = "workflow"; // kept whole: links, groups, subgraph definitions and all
    body = obj;
  } else if (isObject(obj.graph) && Array.isArray(obj.graph.nodes)) {
    kind = "graph";
    body = { nodes: obj.graph.nodes, edges: Array.isArray(obj.graph.edges) ? obj.graph.edges : [] };
  } else if (Array.isArray(obj.nodes)) {
    kind = "graph";
    body = { nodes: obj.nodes, edges: Array.isArray(obj.edges) ? obj.edges : [] };
  } else if (isApiPrompt(obj.prompt)) {
    kind = "prompt";
    body = obj.prompt;
  } else if (isApiPrompt(obj)) {
    kind = "prompt";
    body = obj;
  } else {
    throw new WorkflowFileError(
      `${filename || "The file"} is neither a nodetool graph ({nodes, edges}), a ComfyUI workflow ({nodes, links}) ` +
        "nor a ComfyUI API-format prompt.",
    );
  }
  if ((kind === "graph" || kind === "workflow") && body.nodes.length === 0) {
    throw new WorkflowFileError(kind === "graph" ? "The graph has no nodes." : "The ComfyUI workflow has no nodes.");
  }
  if (kind === "workflow" && !body.nodes.every(isObject)) {
    throw new WorkflowFileError("Every node of a ComfyUI workflow must be a JSON object.");
  }
  const id = workflowIdFor(kind === "prompt" && body === obj ? undefined : obj.id, name);
  return { id, name, kind, body, settings };
}

/** node_id -> class name, for labelling progress bars. */
export function nodeClasses(workflow) {
  const out = new Map();
  if (!workflow || !workflow.body) return out;
  if (workflow.kind === "prompt") {
    for (const [id, node] of Object.entries(workflow.body)) out.set(String(id), node.class_type);
  } else if (workflow.kind === "workflow") {
    // Prompt ids are the editor's node ids (inner subgraph nodes are "outer:inner"; not named here).
    for (const node of workflow.body.nodes || []) {
      if (node && node.id !== undefined) out.set(String(node.id), String(node.title || node.type || ""));
    }
  } else {
    for (const node of workflow.body.nodes || []) {
      if (node && node.id !== undefined) out.set(String(node.id), String(node.type || "").replace(/^comfy\./, ""));
    }
  }
  return out;
}

export function normalizeSettings(settings) {
  const s = { ...DEFAULT_SETTINGS, ...pickSettings(settings) };
  return s;
}

/** Settings as sent on the wire: no empty endpoint id (the backend treats blank as absent). */
export function wireSettings(settings) {
  const s = normalizeSettings(settings);
  const out = { comfy_executor: s.comfy_executor };
  if (s.runpod_endpoint_id) out.runpod_endpoint_id = s.runpod_endpoint_id;
  return out;
}

/** Why these settings cannot be used to run, or null when they can. */
export function settingsProblem(settings) {
  const s = normalizeSettings(settings);
  if (s.comfy_executor !== "runpod") return null;
  if (!s.runpod_endpoint_id) return "Enter the RunPod endpoint ID to run on RunPod.";
  if (!ENDPOINT_ID_PATTERN.test(s.runpod_endpoint_id)) {
    return "The endpoint ID may only contain letters, digits, “-” and “_” (at most 64).";
  }
  return null;
}

const INDEX_KEY = "comfyroute.workflows.v1";
const BODY_PREFIX = "comfyroute.workflow.v1.";
const CURRENT_KEY = "comfyroute.current.v1";

/** This browser's saved workflows, in a Storage (localStorage in the page). */
export class WorkflowIndex {
  constructor(storage) {
    this.storage = storage;
  }

  all() {
    try {
      const raw = JSON.parse(this.storage.getItem(INDEX_KEY) || "{}");
      return isObject(raw) ? raw : {};
    } catch {
      return {};
    }
  }

  /** Entries sorted by name, for the picker. */
  list() {
    return Object.entries(this.all())
      .map(([id, e]) => ({ id, ...e }))
      .sort((a, b) => String(a.name).localeCompare(String(b.name)));
  }

  get(id) {
    const entry = this.all()[id];
    if (!entry) return null;
    let body = null;
    try {
      body = JSON.parse(this.storage.getItem(BODY_PREFIX + id) || "null");
    } catch {
      body = null;
    }
    return { id, name: entry.name, kind: body ? entry.kind : "saved", body, settings: normalizeSettings(entry.settings), synced: entry.synced };
  }

  /** Store the entry (and the body when given); returns false when the body did not fit. */
  put(workflow, { synced }) {
    const all = this.all();
    all[workflow.id] = {
      name: workflow.name,
      kind: workflow.kind,
      settings: normalizeSettings(workflow.settings),
      synced: Boolean(synced),
      updated_at: Date.now(),
    };
    this.storage.setItem(INDEX_KEY, JSON.stringify(all));
    if (!workflow.body) return true;
    try {
      this.storage.setItem(BODY_PREFIX + workflow.id, JSON.stringify(workflow.body));
      return true;
    } catch {
      return false; // quota: the backend's copy is still runnable by workflow_id
    }
  }

  markSynced(id) {
    const all = this.all();
    if (!all[id]) return;
    all[id].synced = true;
    this.storage.setItem(INDEX_KEY, JSON.stringify(all));
  }

  unsynced() {
    return this.list().filter((e) => !e.synced);
  }

  get currentId() {
    return this.storage.getItem(CURRENT_KEY);
  }

  set currentId(id) {
    if (id) this.storage.setItem(CURRENT_KEY, id);
    else this.storage.removeItem(CURRENT_KEY);
  }
}
