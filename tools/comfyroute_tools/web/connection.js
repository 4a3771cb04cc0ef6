// The WebSocket connection: nodetool-style command envelopes out, flat typed messages in,
// and reconnection with exponential backoff after a connection that was open drops.
//
// Events (CustomEvent.detail):
//   "state"   {state, attempt?, delayMs?, reason?}  state: idle|connecting|open|reconnecting|failed
//   "open"    {reconnected: boolean}
//   "message" the parsed server message

export const BACKOFF = Object.freeze({ initialMs: 500, maxMs: 15000 });
// API Gateway drops idle connections after 10 minutes; a ping well inside that keeps it open.
const KEEPALIVE_MS = 5 * 60 * 1000;

/** Delay before reconnect attempt `attempt` (0-based): doubling, capped, with jitter so many
 * clients dropped at once do not all come back in the same instant. */
export function backoffDelay(attempt, { initialMs, maxMs } = BACKOFF, random = Math.random) {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
  return Math.round(base * (0.5 + random() / 2));
}

/** The URL to open: the user's URL with the token as a query parameter. Throws naming the problem. */
export function socketUrl(base, token) {
  let url;
  try {
    url = new URL(String(base).trim());
  } catch {
    throw new Error(`“${base}” is not a URL; it should look like ws://127.0.0.1:3001/`);
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new Error(`The WebSocket URL must start with ws:// or wss://, not ${url.protocol}//`);
  }
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

/** The URL the page suggests: its own host when served over http(s), else the dev stack's. */
export function defaultSocketUrl(location) {
  if (location && (location.protocol === "http:" || location.protocol === "https:") && location.host) {
    return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
  }
  return "ws://127.0.0.1:3001/";
}

export class Connection extends EventTarget {
  constructor({ WebSocketImpl = globalThis.WebSocket, backoff = BACKOFF } = {}) {
    super();
    this.WebSocketImpl = WebSocketImpl;
    this.backoff = backoff;
    this.state = "idle";
    this.ws = null;
    this.url = null;
    this.attempt = 0;
    this.everOpened = false;
    this.retryTimer = null;
    this.keepaliveTimer = null;
  }

  get isOpen() {
    return this.state === "open";
  }

  /** Open a connection; throws (synchronously) when the URL is unusable. */
  connect(baseUrl, token) {
    const url = socketUrl(baseUrl, token);
    this.disconnect();
    this.url = url;
    this.attempt = 0;
    this.everOpened = false;
    this.#open();
  }

  disconnect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.url = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onclose = ws.onmessage = ws.onerror = null;
      ws.close(1000, "client disconnect");
    }
    this.#stopKeepalive();
    if (this.state !== "idle") this.#setState("idle");
  }

  /** Send a command; false when there is no open connection (nothing is queued silently). */
  send(command, data = {}) {
    if (!this.ws || this.state !== "open") return false;
    this.ws.send(JSON.stringify({ command, data }));
    return true;
  }

  #setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...extra } }));
  }

  #open() {
    const reconnecting = this.everOpened;
    this.#setState(reconnecting ? "reconnecting" : "connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (err) {
      this.#setState("failed", { reason: `Could not open the connection: ${err.message}` });
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      const reconnected = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.#setState("open");
      this.#startKeepalive();
      this.dispatchEvent(new CustomEvent("open", { detail: { reconnected } }));
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        msg = { type: "error", code: "bad_message", message: "The server sent a message that is not JSON." };
      }
      this.dispatchEvent(new CustomEvent("message", { detail: msg }));
    };
    ws.onclose = (ev) => {
      this.ws = null;
      this.#stopKeepalive();
      if (!this.url) return; // disconnect() was called
      if (!this.everOpened) {
        // Never opened: a wrong URL or a refused token. Retrying would only repeat it.
        this.#setState("failed", {
          reason: "Could not connect. Check the WebSocket URL and the token.",
          code: ev.code,
        });
        return;
      }
      const delayMs = backoffDelay(this.attempt, this.backoff);
      this.attempt += 1;
      this.#setState("reconnecting", { attempt: this.attempt, delayMs, reason: "The connection dropped." });
      this.retryTimer = setTimeout(() => this.#open(), delayMs);
    };
  }

  #startKeepalive() {
    this.#stopKeepalive();
    this.keepaliveTimer = setInterval(() => this.send("ping"), KEEPALIVE_MS);
  }

  #stopKeepalive() {
    clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = null;
  }
}
