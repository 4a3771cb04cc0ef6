// The page: connection panel, workflow loading, executor toolbar, live job view, history.

import { Connection, defaultSocketUrl } from "./connection.js";
import {
  applyJobView,
  applyMessage,
  describeServerError,
  elapsedSeconds,
  formatDuration,
  isTerminal,
  newJob,
  overallProgress,
  parseErrorText,
  statusLabel,
} from "./jobs.js";
import {
  el,
  renderAttachments,
  renderError,
  renderHistory,
  renderInputs,
  renderOutputs,
  renderProgress,
} from "./render.js";
import {
  MAX_FILES,
  MAX_MESSAGE_BYTES,
  PLACEHOLDER_UPLOAD_ID,
  UploadRequests,
  WORKFLOW_CONTENT_TYPE,
  WORKFLOW_FILENAME,
  frameBytes,
  guessContentType,
  namesProblems,
  placeholderRefs,
  planFiles,
  postUpload,
  suggestInputName,
} from "./uploads.js";
import {
  ENDPOINT_ID_PATTERN,
  WorkflowFileError,
  WorkflowIndex,
  nodeClasses,
  normalizeSettings,
  parseWorkflowFile,
  randomId,
  settingsProblem,
  wireSettings,
} from "./workflows.js";

const CONNECTION_KEY = "comfyroute.connection.v1";
const ACTIVE_JOB_KEY = "comfyroute.active-job.v1";
const ENDPOINT_SAVE_DELAY_MS = 600;
const HISTORY_LIMIT = 30;
const CATCH_UP_INTERVAL_MS = 2000;
const END_ANNOUNCE_DELAY_MS = 400;
// An uploaded file is sent again by its upload id for this long (the backend keeps uploads a day).
const UPLOAD_REUSE_MS = 30 * 60 * 1000;
const SOURCES = ["graph", "prompt", "workflow"];

const $ = (id) => document.getElementById(id);
const ui = {
  connectForm: $("connect-form"),
  wsUrl: $("ws-url"),
  token: $("token"),
  connect: $("connect"),
  disconnect: $("disconnect"),
  connState: $("conn-state"),
  wfFile: $("wf-file"),
  wfFileError: $("wf-file-error"),
  wfSaved: $("wf-saved"),
  wfInfo: $("wf-info"),
  wfName: $("wf-name"),
  wfId: $("wf-id"),
  wfKind: $("wf-kind"),
  executor: $("executor"),
  endpointGroup: $("endpoint-group"),
  endpoint: $("endpoint"),
  endpointError: $("endpoint-error"),
  run: $("run"),
  cancel: $("cancel"),
  saveState: $("save-state"),
  announce: $("announce"),
  job: $("job"),
  jobEmpty: $("job-empty"),
  jobBody: $("job-body"),
  jobStatus: $("job-status"),
  jobElapsed: $("job-elapsed"),
  jobExecutor: $("job-executor"),
  jobWorkflow: $("job-workflow"),
  jobId: $("job-id"),
  jobMessage: $("job-message"),
  jobError: $("job-error"),
  overall: $("overall-progress"),
  nodeProgress: $("node-progress"),
  outputs: $("outputs"),
  history: $("history"),
  historyRefresh: $("history-refresh"),
  inputsPanel: $("inputs-panel"),
  inputFiles: $("input-files"),
  dropZone: $("drop-zone"),
  inputsError: $("inputs-error"),
  attachments: $("attachments"),
  jobInputsGroup: $("job-inputs-group"),
  jobInputs: $("job-inputs"),
};

const index = new WorkflowIndex(window.localStorage);
const conn = new Connection();
const uploadRequests = new UploadRequests((command, data) => conn.send(command, data));
const state = {
  // Files for the next run: {key, file, name, content_type, state, sent, total, error, uploadId, uploadedAt}
  attachments: [],
  nextAttachment: 1,
  workflow: null, // {id, name, kind: "graph"|"prompt"|"saved", body, settings}
  jobs: new Map(),
  viewJobId: null,
  history: [],
  pendingSaves: new Set(), // workflow ids sent with save_workflow, not yet confirmed
  epoch: 0, // counts opened connections; a job remembers the one that receives its pushes
  catchUpTimer: null,
  endTimer: null,
};
let endpointTimer = null;
let tick = null;

// ------------------------------------------------------------------ announcements

function announce(text) {
  // Re-setting identical text is not re-announced by screen readers; clear first.
  ui.announce.textContent = "";
  requestAnimationFrame(() => {
    ui.announce.textContent = text;
  });
}

// ------------------------------------------------------------------ connection

function loadConnectionPrefs() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(CONNECTION_KEY) || "{}") || {};
  } catch {
    saved = {};
  }
  ui.wsUrl.value = saved.url || defaultSocketUrl(window.location);
  ui.token.value = saved.token || "";
}

function saveConnectionPrefs() {
  localStorage.setItem(CONNECTION_KEY, JSON.stringify({ url: ui.wsUrl.value.trim(), token: ui.token.value }));
}

const CONN_WORDS = {
  idle: "Not connected",
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
  failed: "Not connected",
};

function showConnState(detail) {
  let text = CONN_WORDS[detail.state] || detail.state;
  if (detail.state === "reconnecting" && detail.delayMs) {
    text = `Connection lost; reconnecting in ${(detail.delayMs / 1000).toFixed(1)} s (attempt ${detail.attempt})`;
  }
  if (detail.state === "failed" && detail.reason) text = detail.reason;
  ui.connState.textContent = text;
  ui.connState.dataset.state = detail.state;
  const busy = detail.state !== "idle" && detail.state !== "failed";
  ui.disconnect.disabled = !busy;
  ui.connect.textContent = busy ? "Reconnect" : "Connect";
  updateButtons();
}

conn.addEventListener("state", (ev) => {
  if (ev.detail.state !== "open") uploadRequests.fail("The connection dropped while asking for an upload.");
  showConnState(ev.detail);
  if (ev.detail.state !== "connecting") announce(ui.connState.textContent);
});

conn.addEventListener("open", (ev) => {
  state.epoch += 1;
  flushUnsavedWorkflows();
  // Catch up on jobs that may have moved while we were away (a drop or a page reload).
  const remembered = localStorage.getItem(ACTIVE_JOB_KEY);
  if (remembered && !state.jobs.has(remembered)) {
    state.jobs.set(remembered, newJob(remembered, { status: "queued", epoch: 0 }));
    if (!state.viewJobId) state.viewJobId = remembered;
  }
  // A run_job that was in flight when the connection dropped is resent with the same job_id,
  // which the backend treats as the same job (idempotency key).
  for (const job of state.jobs.values()) {
    if (job.status === "submitting" && job.request) {
      job.epoch = state.epoch;
      conn.send("run_job", job.request);
    }
  }
  catchUp();
  requestHistory();
  renderJob();
});

/**
 * The backend pushes a job's updates to the connection that started it. After a reconnect that
 * connection is gone, so jobs started on an earlier one are followed with get_job until they end.
 */
function catchUp({ now = true } = {}) {
  clearTimeout(state.catchUpTimer);
  if (!conn.isOpen) return;
  const stale = [...state.jobs.values()].filter(
    (j) =>
      !isTerminal(j.status) &&
      j.status !== "submitting" &&
      j.epoch !== state.epoch &&
      (j.epoch !== undefined || j.job_id === state.viewJobId),
  );
  if (now) for (const job of stale) conn.send("get_job", { job_id: job.job_id });
  if (stale.length) state.catchUpTimer = setTimeout(catchUp, CATCH_UP_INTERVAL_MS);
}

conn.addEventListener("message", (ev) => handleMessage(ev.detail));

ui.connectForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!ui.token.value) {
    ui.connState.textContent = "Enter your token to connect.";
    ui.token.focus();
    return;
  }
  saveConnectionPrefs();
  try {
    conn.connect(ui.wsUrl.value, ui.token.value);
  } catch (err) {
    ui.connState.textContent = err.message;
    ui.connState.dataset.state = "failed";
    ui.wsUrl.focus();
  }
});

ui.disconnect.addEventListener("click", () => conn.disconnect());

// ------------------------------------------------------------------ server messages

function handleMessage(msg) {
  if (uploadRequests.handle(msg)) return;
  switch (msg.type) {
    case "job_update":
    case "node_progress":
    case "output_update":
    case "job": {
      const { jobId, changed } = applyMessage(state.jobs, msg);
      const job = state.jobs.get(jobId);
      if (job && changed === "status") onStatusChange(job);
      else if (job && changed === "output" && isTerminal(job.status) && jobId === state.viewJobId) announceEnd(job);
      if (jobId === state.viewJobId) renderJob();
      if (changed === "status") updateHistoryEntry(job);
      break;
    }
    case "job_list":
      state.history = Array.isArray(msg.jobs) ? msg.jobs : [];
      drawHistory();
      break;
    case "workflow_saved":
      state.pendingSaves.delete(msg.workflow_id);
      index.markSynced(msg.workflow_id);
      if (state.workflow && msg.workflow_id === state.workflow.id) showSaveState("Saved");
      break;
    case "error":
      handleError(msg);
      break;
    default:
      break; // pong and anything newer than this page
  }
}

function onStatusChange(job) {
  if (job.request && job.status !== "submitting") delete job.request; // accepted: no resend
  if (isTerminal(job.status)) {
    if (localStorage.getItem(ACTIVE_JOB_KEY) === job.job_id) localStorage.removeItem(ACTIVE_JOB_KEY);
    if (job.job_id === state.viewJobId) announceEnd(job);
    requestHistory();
  } else if (job.job_id === state.viewJobId) {
    announce(`Job ${statusLabel(job.status).toLowerCase()}.`);
  }
}

/** The final job_update comes before the job's output_update messages: announce the end once
 * the outputs have stopped arriving, so the count is right. */
function announceEnd(job) {
  clearTimeout(state.endTimer);
  state.endTimer = setTimeout(() => {
    const outs = job.outputs.length;
    const suffix = job.status === "completed" ? ` with ${outs} output${outs === 1 ? "" : "s"}` : "";
    const why = job.status === "failed" && job.error ? ` ${errorGist(job.error)}` : "";
    announce(`Job ${statusLabel(job.status).toLowerCase()}${suffix}.${why}`);
  }, END_ANNOUNCE_DELAY_MS);
}

function handleError(msg) {
  const text = describeServerError(msg);
  if (msg.request === "run_job" && msg.code === "in_progress") return; // our resend; the job goes on
  if (msg.request === "run_job" && String(msg.code || "").startsWith("upload_")) {
    // An upload the backend no longer has (or never took): send the files afresh next time.
    for (const a of state.attachments) a.uploadId = null;
  }
  if (msg.request === "run_job" && msg.code === "job_failed") {
    // Accepted, then failed at submit: the job_update beside it carries the status and announces.
    const job = msg.job_id && state.jobs.get(msg.job_id);
    if (job && !job.error) job.error = text;
    if (job && job.job_id === state.viewJobId) renderJob();
    return;
  }
  if (msg.request === "run_job") {
    // The refusal of our run: find the job it belongs to.
    const job =
      (msg.job_id && state.jobs.get(msg.job_id)) ||
      [...state.jobs.values()].reverse().find((j) => j.status === "submitting");
    if (job) {
      job.status = "failed";
      job.error = text;
      delete job.request;
      if (localStorage.getItem(ACTIVE_JOB_KEY) === job.job_id) localStorage.removeItem(ACTIVE_JOB_KEY);
      if (job.job_id === state.viewJobId) {
        renderJob();
        announce(`The job was not started. ${errorGist(text)}`);
      }
      return;
    }
  }
  if (msg.request === "save_workflow") {
    if (msg.workflow_id) state.pendingSaves.delete(msg.workflow_id);
    showSaveState(`Not saved: ${text}`, true);
    announce(`The workflow was not saved. ${text}`);
    return;
  }
  if (msg.request === "get_job" && msg.job_id && msg.code === "not_found") {
    // Expired (job TTL) or never ours: stop following it.
    if (msg.job_id === localStorage.getItem(ACTIVE_JOB_KEY)) localStorage.removeItem(ACTIVE_JOB_KEY);
    const job = state.jobs.get(msg.job_id);
    if (job && !isTerminal(job.status)) state.jobs.delete(msg.job_id);
    if (state.viewJobId === msg.job_id && !state.jobs.has(msg.job_id)) {
      state.viewJobId = null;
      renderJob();
    }
  }
  announce(`Error: ${text}`);
}

/** A short spoken form of an error: its summary, and how many problems the list shows. */
function errorGist(text) {
  const { summary, items } = parseErrorText(text);
  if (!items.length) return summary;
  const count = `${items.length} problem${items.length === 1 ? "" : "s"} listed below`;
  return summary ? `${summary}: ${count}.` : `${count}.`;
}

// ------------------------------------------------------------------ workflows

function drawSavedList() {
  const current = state.workflow ? state.workflow.id : "";
  const options = [el("option", { value: "", text: "Choose a saved workflow…" })];
  for (const entry of index.list()) {
    options.push(el("option", { value: entry.id, text: `${entry.name} (${entry.id})`, selected: entry.id === current }));
  }
  ui.wfSaved.replaceChildren(...options);
}

function setWorkflow(workflow) {
  state.workflow = workflow;
  index.currentId = workflow ? workflow.id : null;
  ui.wfInfo.hidden = !workflow;
  if (workflow) {
    ui.wfName.textContent = workflow.name;
    ui.wfId.textContent = workflow.id;
    ui.wfKind.textContent =
      workflow.kind === "graph"
        ? `nodetool graph, ${workflow.body.nodes.length} nodes`
        : workflow.kind === "prompt"
          ? `ComfyUI API prompt, ${Object.keys(workflow.body).length} nodes`
          : workflow.kind === "workflow"
            ? `ComfyUI workflow, ${workflow.body.nodes.length} nodes`
            : "saved on the server (run by its ID)";
  }
  showSettings();
  drawSavedList();
  updateButtons();
}

function showSettings() {
  const s = normalizeSettings(state.workflow && state.workflow.settings);
  ui.executor.value = s.comfy_executor;
  ui.endpoint.value = s.runpod_endpoint_id;
  ui.endpointGroup.hidden = s.comfy_executor !== "runpod";
  showEndpointProblem(false);
}

function showEndpointProblem(forRun) {
  const s = normalizeSettings(state.workflow && state.workflow.settings);
  let problem = s.comfy_executor === "runpod" ? settingsProblem(s) : null;
  // An empty field is only a problem once the user tries to run.
  if (problem && !s.runpod_endpoint_id && !forRun) problem = null;
  ui.endpointError.hidden = !problem;
  ui.endpointError.textContent = problem || "";
  if (problem) ui.endpoint.setAttribute("aria-invalid", "true");
  else ui.endpoint.removeAttribute("aria-invalid");
  return problem;
}

function showSaveState(text, isError = false) {
  ui.saveState.textContent = text;
  ui.saveState.classList.toggle("is-error", isError);
}

/** Store the current workflow in this browser and on the server (when connected). */
function saveWorkflow() {
  const wf = state.workflow;
  if (!wf) return;
  index.put(wf, { synced: false });
  drawSavedList();
  if (!conn.isOpen) {
    showSaveState("Saved in this browser; will save to the server when connected");
    return;
  }
  sendSave(wf);
}

function sendSave(wf) {
  const data = { workflow_id: wf.id, name: wf.name, settings: wireSettings(wf.settings) };
  if (SOURCES.includes(wf.kind)) data[wf.kind] = wf.body;
  if (new TextEncoder().encode(JSON.stringify({ command: "save_workflow", data })).length > MAX_MESSAGE_BYTES) {
    // save_workflow has no upload form; the run sends such a workflow by upload instead.
    index.markSynced(wf.id);
    if (state.workflow && wf.id === state.workflow.id) {
      showSaveState("Saved in this browser; too large to save on the server (it is uploaded with each run)");
    }
    return;
  }
  state.pendingSaves.add(wf.id);
  if (state.workflow && wf.id === state.workflow.id) showSaveState("Saving…");
  conn.send("save_workflow", data);
}

function flushUnsavedWorkflows() {
  for (const entry of index.unsynced()) {
    const wf = index.get(entry.id);
    if (wf) sendSave(wf);
  }
}

ui.wfFile.addEventListener("change", async () => {
  const file = ui.wfFile.files && ui.wfFile.files[0];
  if (!file) return;
  ui.wfFileError.hidden = true;
  try {
    const parsed = parseWorkflowFile(await file.text(), file.name);
    // The user's last executor choice for this workflow wins over what the file says.
    const known = index.get(parsed.id);
    parsed.settings = normalizeSettings(known ? known.settings : parsed.settings);
    setWorkflow(parsed);
    saveWorkflow();
    announce(`Opened workflow ${parsed.name}.`);
  } catch (err) {
    const text = err instanceof WorkflowFileError ? err.message : `Could not read the file: ${err.message}`;
    ui.wfFileError.textContent = text;
    ui.wfFileError.hidden = false;
  } finally {
    ui.wfFile.value = ""; // choosing the same file again still fires change
  }
});

ui.wfSaved.addEventListener("change", () => {
  const id = ui.wfSaved.value;
  if (!id) return;
  const wf = index.get(id);
  if (!wf) return;
  setWorkflow(wf);
  announce(`Opened saved workflow ${wf.name}.`);
});

ui.executor.addEventListener("change", () => {
  if (!state.workflow) return;
  state.workflow.settings = { ...normalizeSettings(state.workflow.settings), comfy_executor: ui.executor.value };
  ui.endpointGroup.hidden = ui.executor.value !== "runpod";
  showEndpointProblem(false);
  saveWorkflow();
  announce(ui.executor.value === "runpod" ? "Runs on RunPod. Enter the endpoint ID." : "Runs on the local ComfyUI.");
});

function commitEndpoint() {
  clearTimeout(endpointTimer);
  if (!state.workflow) return;
  const value = ui.endpoint.value.trim();
  const s = normalizeSettings(state.workflow.settings);
  if (value === s.runpod_endpoint_id) return;
  state.workflow.settings = { ...s, runpod_endpoint_id: value };
  // An id the backend would refuse is kept in the field (for fixing) but not saved.
  if (value && !ENDPOINT_ID_PATTERN.test(value)) {
    showEndpointProblem(false);
    return;
  }
  showEndpointProblem(false);
  saveWorkflow();
}

ui.endpoint.addEventListener("input", () => {
  clearTimeout(endpointTimer);
  endpointTimer = setTimeout(commitEndpoint, ENDPOINT_SAVE_DELAY_MS);
});
ui.endpoint.addEventListener("change", commitEndpoint);

// ------------------------------------------------------------------ run / cancel

function viewedJob() {
  return state.viewJobId ? state.jobs.get(state.viewJobId) : null;
}

function updateButtons() {
  const open = conn.isOpen;
  ui.executor.disabled = !state.workflow;
  const running = [...state.jobs.values()].some((j) => j.status === "submitting");
  ui.run.disabled = !state.workflow || !open || running;
  const job = viewedJob();
  ui.cancel.disabled = !open || !job || isTerminal(job.status) || job.status === "submitting";
  ui.historyRefresh.disabled = !open;
}

ui.run.addEventListener("click", () => {
  startRun();
});

async function startRun() {
  const wf = state.workflow;
  if (!wf || !conn.isOpen) return;
  commitEndpoint();
  if (showEndpointProblem(true)) {
    ui.endpoint.focus();
    announce(ui.endpointError.textContent);
    return;
  }
  if (!checkAttachments(true)) return;
  const jobId = randomId("job");
  const request = { job_id: jobId, workflow_id: wf.id, settings: wireSettings(wf.settings) };
  if (SOURCES.includes(wf.kind)) request[wf.kind] = wf.body;
  const files = state.attachments.slice();
  const job = newJob(jobId, {
    workflow_id: wf.id,
    executor: request.settings.comfy_executor,
    started_ms: Date.now(),
    epoch: state.epoch,
    inputs: files.map((a) => ({ name: a.name, size: a.file.size, content_type: a.content_type })),
  });
  state.jobs.set(jobId, job);
  state.viewJobId = jobId;
  renderJob();
  const where = request.settings.comfy_executor === "runpod" ? "RunPod" : "the local ComfyUI";
  try {
    await fitWorkflow(request, files, job);
    if (files.length) {
      job.message = `Sending ${files.length} input file${files.length === 1 ? "" : "s"}…`;
      renderJob();
      announce(`${job.message}`);
      await attachFiles(request, files);
    }
  } catch (err) {
    job.status = "failed";
    job.error = `The job was not started: ${err.message}`;
    job.message = null;
    renderJob();
    drawAttachments();
    announce(`The job was not started. ${err.message}`);
    return;
  }
  job.message = null;
  job.request = request; // resent with the same job_id if the connection drops before the answer
  localStorage.setItem(ACTIVE_JOB_KEY, jobId);
  conn.send("run_job", request);
  renderJob();
  announce(`Sending the job to ${where}…`);
}

/** Upload one blob: request_upload, then the presigned POST. Resolves with the upload id. */
async function uploadBlob(blob, filename, contentType, onProgress) {
  const ready = await uploadRequests.request(filename, contentType, blob.size);
  await postUpload(ready, blob, filename, onProgress);
  return ready.upload_id;
}

/** A workflow whose frame would pass 128 KB goes by upload and runs by workflow_upload_id. */
async function fitWorkflow(request, files, job) {
  const refs = placeholderRefs(files.map((a) => ({ name: a.name })));
  const framed = (data) => frameBytes(refs.length ? { ...data, files: refs } : data);
  if (framed(request) <= MAX_MESSAGE_BYTES) return;
  const kind = SOURCES.find((k) => request[k] !== undefined);
  if (!kind) return;
  const moved = { ...request, workflow_upload_id: PLACEHOLDER_UPLOAD_ID };
  delete moved[kind];
  if (framed(moved) > MAX_MESSAGE_BYTES) {
    throw new Error("the job is over the 128 KB message limit even with the workflow uploaded (too many files?).");
  }
  const body = new Blob([JSON.stringify(request[kind])], { type: WORKFLOW_CONTENT_TYPE });
  job.message = "Uploading the workflow (it is over the 128 KB message limit)…";
  renderJob();
  announce(job.message);
  request.workflow_upload_id = await uploadBlob(body, WORKFLOW_FILENAME, WORKFLOW_CONTENT_TYPE, () => {});
  delete request[kind];
}

/** Small files inline, the rest uploaded (or reused by upload id); sets request.files. */
async function attachFiles(request, files) {
  const now = Date.now();
  const items = files.map((a) => ({
    name: a.name,
    size: a.file.size,
    content_type: a.content_type,
    read: () => a.file.arrayBuffer(),
    upload_id: a.uploadId && now - a.uploadedAt < UPLOAD_REUSE_MS ? a.uploadId : null,
  }));
  for (const a of files) {
    a.error = null;
    a.state = "reading";
  }
  drawAttachments();
  const plan = await planFiles(request, items);
  files.forEach((a, i) => {
    a.state = plan.files[i].data !== undefined ? "inline" : items[i].upload_id ? "uploaded" : "ready";
  });
  drawAttachments();
  for (const i of plan.uploads) {
    const a = files[i];
    a.state = "uploading";
    a.sent = 0;
    a.total = a.file.size;
    drawAttachments();
    try {
      a.uploadId = await uploadBlob(a.file, a.name, a.content_type, (sent, total) => {
        a.sent = sent;
        a.total = total;
        drawAttachments();
      });
    } catch (err) {
      a.state = "failed";
      a.error = err.message;
      throw err;
    }
    a.uploadedAt = Date.now();
    a.state = "uploaded";
    plan.files[i] = { name: a.name, upload_id: a.uploadId };
    drawAttachments();
  }
  request.files = plan.files;
}

ui.cancel.addEventListener("click", () => {
  const job = viewedJob();
  if (!job || isTerminal(job.status)) return;
  conn.send("cancel_job", { job_id: job.job_id });
  announce("Cancelling the job…");
});

// ------------------------------------------------------------------ job view

function renderJob() {
  const job = viewedJob();
  ui.jobEmpty.hidden = Boolean(job);
  ui.jobBody.hidden = !job;
  updateButtons();
  if (!job) return;
  ui.job.dataset.status = job.status;
  ui.jobStatus.textContent = statusLabel(job.status);
  ui.jobStatus.className = `status status-${job.status}`;
  ui.jobExecutor.textContent = job.executor === "runpod" ? "RunPod" : job.executor === "local" ? "Local" : "—";
  ui.jobWorkflow.textContent = job.workflow_id || "—";
  ui.jobId.textContent = job.job_id;
  ui.jobMessage.hidden = !job.message;
  ui.jobMessage.textContent = job.message || "";
  renderError(ui.jobError, job.error);
  const overall = overallProgress(job);
  if (overall === null && !isTerminal(job.status)) ui.overall.removeAttribute("value"); // indeterminate
  else ui.overall.value = overall === null ? (job.status === "completed" ? 1 : 0) : overall;
  const wf = state.workflow && state.workflow.id === job.workflow_id ? state.workflow : null;
  renderProgress(ui.nodeProgress, job, nodeClasses(wf));
  ui.jobInputsGroup.hidden = !job.inputs.length;
  renderInputs(ui.jobInputs, job.inputs);
  renderOutputs(ui.outputs, job.outputs, isTerminal(job.status) ? "No outputs." : "No outputs yet.", job.job_id);
  drawElapsed();
  if (!isTerminal(job.status) && !tick) tick = setInterval(drawElapsed, 250);
  highlightHistory();
}

function drawElapsed() {
  const job = viewedJob();
  if (!job) return;
  ui.jobElapsed.textContent = formatDuration(elapsedSeconds(job, Date.now()));
  if (isTerminal(job.status) && tick) {
    clearInterval(tick);
    tick = null;
  }
}

// ------------------------------------------------------------------ history

function requestHistory() {
  conn.send("list_jobs", { limit: HISTORY_LIMIT });
}

function drawHistory() {
  renderHistory(ui.history, state.history, state.viewJobId, pickJob);
}

function highlightHistory() {
  for (const btn of ui.history.querySelectorAll("button[data-job-id]")) {
    if (btn.dataset.jobId === state.viewJobId) btn.setAttribute("aria-current", "true");
    else btn.removeAttribute("aria-current");
  }
}

function updateHistoryEntry(job) {
  const entry = job && state.history.find((h) => h.job_id === job.job_id);
  if (entry && entry.status !== job.status) {
    entry.status = job.status;
    drawHistory();
  }
}

function pickJob(jobId) {
  const listed = state.history.find((h) => h.job_id === jobId);
  if (listed && !state.jobs.has(jobId)) applyJobView(state.jobs, listed);
  state.viewJobId = jobId;
  renderJob();
  // Fresh status and fresh (presigned) output URLs.
  conn.send("get_job", { job_id: jobId });
  catchUp({ now: false }); // a running job started elsewhere sends us no pushes: follow it
  ui.job.focus();
  announce(`Showing job ${jobId}.`);
}

ui.historyRefresh.addEventListener("click", requestHistory);

// ------------------------------------------------------------------ input files

function drawAttachments() {
  renderAttachments(ui.attachments, state.attachments, namesProblems(state.attachments), {
    rename: (i, name) => {
      const a = state.attachments[i];
      if (!a) return;
      a.name = name;
      if (a.state === "failed") {
        a.state = "ready";
        a.error = null;
      }
      drawAttachments();
    },
    remove: (i) => {
      const [gone] = state.attachments.splice(i, 1);
      drawAttachments();
      const next = ui.attachments.querySelectorAll(".att-remove")[Math.min(i, state.attachments.length - 1)];
      (next || ui.inputFiles).focus(); // keyboard focus stays in the list
      if (gone) announce(`Removed ${gone.file.name}.`);
    },
  });
}

/** Whether the attachments can be sent; with `forRun`, the first problem is focused and said. */
function checkAttachments(forRun) {
  const problems = namesProblems(state.attachments);
  drawAttachments();
  if (!problems.size) return true;
  if (forRun) {
    const [i, text] = [...problems.entries()][0];
    const input = ui.attachments.querySelectorAll(".att-name")[i];
    if (input) input.focus();
    announce(`Fix the name of ${state.attachments[i].file.name}: ${text}`);
  }
  return false;
}

function uniqueName(name) {
  const taken = new Set(state.attachments.map((a) => a.name));
  if (!taken.has(name)) return name;
  const dot = name.lastIndexOf(".");
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
  for (let n = 2; ; n += 1) {
    const candidate = `${stem} (${n})${ext}`;
    if (!taken.has(candidate)) return candidate;
  }
}

function addFiles(fileList) {
  const files = [...(fileList || [])];
  if (!files.length) return;
  ui.inputsError.hidden = true;
  const room = MAX_FILES - state.attachments.length;
  if (files.length > room) {
    ui.inputsError.textContent = `A job takes at most ${MAX_FILES} files; ${files.length - Math.max(room, 0)} were not attached.`;
    ui.inputsError.hidden = false;
  }
  const added = files.slice(0, Math.max(room, 0));
  for (const file of added) {
    state.attachments.push({
      key: state.nextAttachment++,
      file,
      name: uniqueName(suggestInputName(file.name)),
      content_type: guessContentType(file),
      state: "ready",
      sent: 0,
      total: 0,
      error: null,
      uploadId: null,
      uploadedAt: 0,
    });
  }
  drawAttachments();
  if (added.length) {
    const names = added.map((f) => f.name).join(", ");
    announce(`Attached ${added.length} file${added.length === 1 ? "" : "s"}: ${names}.`);
  }
}

ui.inputFiles.addEventListener("change", () => {
  addFiles(ui.inputFiles.files);
  ui.inputFiles.value = ""; // the same file again still fires change
});

function carriesFiles(ev) {
  return ev.dataTransfer && [...ev.dataTransfer.types].includes("Files");
}

for (const type of ["dragenter", "dragover"]) {
  ui.inputsPanel.addEventListener(type, (ev) => {
    if (!carriesFiles(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = "copy";
    ui.dropZone.dataset.state = "over";
  });
}
ui.inputsPanel.addEventListener("dragleave", (ev) => {
  if (!ui.inputsPanel.contains(ev.relatedTarget)) ui.dropZone.dataset.state = "idle";
});
ui.inputsPanel.addEventListener("drop", (ev) => {
  ev.preventDefault();
  ui.dropZone.dataset.state = "idle";
  addFiles(ev.dataTransfer && ev.dataTransfer.files);
});
// A file dropped anywhere else must not make the browser leave the page (and the job view).
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (ev) => {
    if (carriesFiles(ev) && !ui.inputsPanel.contains(ev.target)) ev.preventDefault();
  });
}

// ------------------------------------------------------------------ start

function restore() {
  loadConnectionPrefs();
  drawSavedList();
  const id = index.currentId;
  const wf = id ? index.get(id) : null;
  setWorkflow(wf);
  renderJob();
  if (ui.token.value && ui.wsUrl.value) {
    try {
      conn.connect(ui.wsUrl.value, ui.token.value);
    } catch (err) {
      ui.connState.textContent = err.message;
    }
  }
}

restore();
// For tests and the console: the page state, and a way to drop the socket as a network would
// (the token is deliberately not reachable from here).
window.comfyroute = {
  state,
  addFiles,
  dropConnection: () => conn.ws && conn.ws.close(4000, "dropped for testing"),
};
