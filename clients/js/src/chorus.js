// Chorus browser client: watch a live stream's comments and likes (WebSocket, falling back to SSE, then to
// long-poll), post comments and likes. One ES module, no dependencies; see clients/js/README.md.

/** @typedef {"ws" | "sse" | "poll"} Transport */
/** @typedef {"connecting" | "connected" | "reconnecting" | "closed"} State */
/** @typedef {{ baseMs?: number, capMs?: number }} Backoff */
/** @typedef {(options?: { refresh?: boolean }) => Promise<string | undefined> | string | undefined} TokenSource */
/**
 * A frame from the edge: `hello`, `events`, `likes`, `gap`, `reconnect`, `retract`, `viewers`, or a newer type.
 * @typedef {{ type: string, cursor?: string, [field: string]: any }} Frame
 */
/** Comments a moderator took down. @typedef {{ type: "retract", stream_id: string, event_ids: string[] }} Retract */
/** Viewers, `hello.viewers` first. @typedef {{ type: "viewers", stream_id: string, count: number }} Viewers */
/**
 * One comment as a viewer receives it.
 * @typedef {{ event_id: string, user_id: string, kind: string, text?: string, created_ms: number,
 *   origin?: string, topic?: string, offset?: number, [field: string]: any }} Comment
 */

/** @type {readonly Transport[]} */
export const TRANSPORTS = ["ws", "sse", "poll"];

const sleep = (/** @type {number} */ ms) => new Promise((done) => setTimeout(done, ms));

/**
 * Full-jitter exponential backoff: a random delay in [0, min(cap, base * 2^attempt)).
 * @param {number} attempt failed attempts so far (0 for the first retry)
 * @param {Backoff} [backoff]
 * @param {() => number} [random]
 */
export function backoffDelay(attempt, { baseMs = 500, capMs = 15000 } = {}, random = Math.random) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Remembers the last `max` ids: `add` is true for an id not seen among them. */
export class Dedup {
  /** @type {Set<string>} */
  #seen = new Set();
  #max;

  constructor(max = 2000) {
    this.#max = max;
  }

  /** @param {string} id */
  add(id) {
    if (this.#seen.has(id)) return false;
    this.#seen.add(id);
    if (this.#seen.size > this.#max) this.#seen.delete(/** @type {string} */ (this.#seen.values().next().value));
    return true;
  }

  get size() {
    return this.#seen.size;
  }
}

/** Frame types whose frame is surfaced as an event of the same name. */
const TYPED = ["hello", "likes", "gap", "reconnect", "retract", "viewers"];

/**
 * Parses one frame (JSON text, or an object from a long-poll answer) into the events it means: `comment` per
 * comment of an `events` frame, an event named after the frame for the other known types (and `viewers` after a
 * `hello` with a count), none for unknown types (they are still surfaced as `frame`). `undefined` when it is not
 * a frame.
 * @param {unknown} data
 * @returns {{ frame: Frame, events: { type: string, detail: any }[] } | undefined}
 */
export function decodeFrame(data) {
  let frame = data;
  if (typeof data === "string") {
    try {
      frame = JSON.parse(data);
    } catch {
      return undefined;
    }
  }
  if (!frame || typeof frame !== "object" || typeof (/** @type {any} */ (frame).type) !== "string") return undefined;
  const f = /** @type {Frame} */ (frame);
  /** @type {{ type: string, detail: any }[]} */
  let events = [];
  if (f.type === "events") {
    const list = Array.isArray(f.events) ? f.events : [];
    events = list.filter((e) => e && e.kind === "comment").map((e) => ({ type: "comment", detail: e }));
  } else if (f.type === "retract") {
    const ids = Array.isArray(f.event_ids) ? f.event_ids.filter((id) => typeof id === "string") : [];
    events = [{ type: "retract", detail: { ...f, event_ids: ids } }];
  } else if (TYPED.includes(f.type)) {
    events = [{ type: f.type, detail: f }];
    if (f.type === "hello" && typeof f.viewers === "number") {
      events.push({ type: "viewers", detail: { type: "viewers", stream_id: f.stream_id, count: f.viewers } });
    }
  }
  return { frame: f, events };
}

/**
 * The order to try transports in: the one that last worked first, then the others in their configured order.
 * @param {readonly Transport[]} transports
 * @param {Transport} [preferred]
 */
export function transportOrder(transports, preferred) {
  if (!preferred || !transports.includes(preferred)) return [...transports];
  return [preferred, ...transports.filter((t) => t !== preferred)];
}

/**
 * The URL of a viewer endpoint on `edge` (an http(s) URL; WebSocket gets ws(s)).
 * @param {string} edge
 * @param {string} stream
 * @param {Transport} transport
 * @param {{ cursor?: string, accessToken?: string, waitMs?: number }} [query]
 */
export function viewerUrl(edge, stream, transport, { cursor, accessToken, waitMs } = {}) {
  const url = new URL(edge);
  if (transport === "ws") url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1/streams/${encodeURIComponent(stream)}/${transport}`;
  const params = [];
  if (cursor !== undefined && cursor !== "") params.push(`cursor=${encodeURIComponent(cursor)}`);
  if (transport === "poll" && waitMs !== undefined) params.push(`wait_ms=${waitMs}`);
  if (accessToken) params.push(`access_token=${encodeURIComponent(accessToken)}`);
  url.search = params.join("&");
  url.hash = "";
  return url.toString();
}

/**
 * @typedef {object} WatchOptions
 * @property {string[]} edges edge base URLs (`http://host:port`); reconnects go round-robin from a random one
 * @property {string} stream stream id
 * @property {TokenSource} [token] watch token, sent as `?access_token=`
 * @property {Transport[]} [transports] tried in this order (default ws, sse, poll)
 * @property {Backoff} [backoff] reconnect backoff (default 500 ms base, 15 s cap)
 * @property {number} [openTimeoutMs] a transport with no frame this long after it was started has failed (5000)
 * @property {number} [pollWaitMs] how long a long-poll waits for news (25000)
 * @property {number} [dedupWindow] event ids remembered to drop repeats (2000)
 * @property {() => number} [random] for tests
 */

/**
 * Watches a stream; see {@link Watch}.
 * @param {WatchOptions} options
 */
export function watchStream(options) {
  return new Watch(options);
}

/**
 * A stream being watched. An EventTarget: every event is a CustomEvent whose `detail` is the payload;
 * `on(type, fn)` calls `fn(detail)` and returns a function that stops it.
 * Events: comment, likes, gap, hello, reconnect, retract ({@link Retract}), viewers ({@link Viewers}), frame (every
 * frame), status.
 */
export class Watch extends EventTarget {
  /** @type {Transport | undefined} the transport in use or being tried */
  transport = undefined;
  /** @type {State} */
  state = "connecting";
  /** @type {string | undefined} the edge in use or being tried */
  edge = undefined;
  /** @type {string | undefined} where to resume from */
  cursor = undefined;
  /** @type {number | undefined} the stream's viewers, as last told */
  viewers = undefined;

  #options;
  #dedup;
  #edgeIndex;
  #attempt = 0;
  #closed = false;
  #connectedOnce = false;
  /** @type {Transport | undefined} */
  #preferred = undefined;
  /** @type {(() => void) | undefined} ends the current connection or wait */
  #stop = undefined;

  /** @param {WatchOptions} options */
  constructor(options) {
    super();
    if (!options.edges?.length) throw new TypeError("watchStream: `edges` needs at least one URL");
    this.#options = {
      ...options,
      transports: options.transports ?? TRANSPORTS,
      openTimeoutMs: options.openTimeoutMs ?? 5000,
      pollWaitMs: options.pollWaitMs ?? 25000,
      random: options.random ?? Math.random,
    };
    this.#dedup = new Dedup(options.dedupWindow ?? 2000);
    this.#edgeIndex = Math.floor(this.#options.random() * options.edges.length);
    queueMicrotask(() => this.#run()); // listeners attached right after watchStream() see every event
  }

  /**
   * @param {string} type
   * @param {(detail: any) => void} fn
   */
  on(type, fn) {
    /** @param {Event} e */
    const listener = (e) => fn(/** @type {CustomEvent} */ (e).detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /** Ends the watch: the connection is closed and never reopened. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop?.();
    this.#status("closed");
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {State} state */
  #status(state) {
    this.state = state;
    this.#emit("status", { transport: this.transport, state, edge: this.edge });
  }

  async #run() {
    const { edges, backoff } = this.#options;
    while (!this.#closed) {
      const edge = edges[this.#edgeIndex++ % edges.length];
      /** @type {{ opened: boolean, delayMs?: number }} */
      let outcome = { opened: false };
      for (const transport of transportOrder(this.#options.transports, this.#preferred)) {
        if (this.#closed) return;
        outcome = await this.#connect(transport, edge);
        if (outcome.opened || this.#closed) break;
      }
      if (this.#closed) return;
      // A `reconnect` frame's delay is the edge's to choose, and is no failure.
      const delay = outcome.delayMs ?? backoffDelay(this.#attempt++, backoff, this.#options.random);
      this.#status("reconnecting");
      await new Promise((done) => {
        const timer = setTimeout(done, delay);
        this.#stop = () => (clearTimeout(timer), done(undefined));
      });
    }
  }

  /**
   * Runs one connection until it ends; `opened` once a frame (or a long-poll answer) came.
   * @param {Transport} transport
   * @param {string} edge
   * @returns {Promise<{ opened: boolean, delayMs?: number }>}
   */
  async #connect(transport, edge) {
    this.transport = transport;
    this.edge = edge;
    this.#status(this.#connectedOnce ? "reconnecting" : "connecting");
    const accessToken = await this.#token();
    if (this.#closed) return { opened: false };
    return new Promise((resolve) => {
      let opened = false;
      let ended = false;
      /** @type {number | undefined} */
      let delayMs;
      let stopTransport = () => {};
      const end = () => {
        if (ended) return;
        ended = true;
        clearTimeout(timer);
        stopTransport();
        this.#stop = undefined;
        resolve({ opened, delayMs });
      };
      const timer = setTimeout(() => opened || end(), this.#options.openTimeoutMs);
      const open = () => {
        if (opened) return;
        opened = this.#connectedOnce = true;
        clearTimeout(timer);
        this.#preferred = transport;
        this.#status("connected");
      };
      /** @param {unknown} data @param {string} [id] SSE's `id:` */
      const receive = (data, id) => {
        const decoded = decodeFrame(data);
        if (!decoded) return;
        open();
        const { frame } = decoded;
        if (typeof frame.cursor === "string" && frame.cursor) this.cursor = frame.cursor;
        if (id) this.cursor = id;
        if (frame.type === "hello") this.#attempt = 0;
        this.#emit("frame", frame);
        for (const { type, detail } of decoded.events) {
          if (type === "viewers" && typeof detail.count === "number") this.viewers = detail.count;
          // A comment taken down stays down: a later copy of it is dropped as a repeat.
          if (type === "retract") for (const id of detail.event_ids) this.#dedup.add(id);
          if (type !== "comment" || typeof detail.event_id !== "string" || this.#dedup.add(detail.event_id)) {
            this.#emit(type, detail);
          }
        }
        if (frame.type === "reconnect") {
          delayMs = Math.max(0, Number(frame.delay_ms) || 0);
          end();
        }
      };
      this.#stop = end;
      const url = (/** @type {{ cursor?: string, waitMs?: number }} */ query = {}) =>
        viewerUrl(edge, this.#options.stream, transport, { cursor: this.cursor, accessToken, ...query });
      try {
        if (transport === "ws") stopTransport = openWebSocket(url(), receive, end);
        else if (transport === "sse") stopTransport = openEventSource(url(), receive, end);
        else stopTransport = this.#poll(url, receive, open, end);
      } catch {
        end(); // no such API here (EventSource in node), or a URL it refuses
      }
    });
  }

  async #token() {
    try {
      return (await this.#options.token?.()) || undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Long-polls until stopped or refused; the first poll of a resume does not wait, so a working transport
   * answers at once.
   * @param {(query?: { cursor?: string, waitMs?: number }) => string} url
   * @param {(data: unknown) => void} receive
   * @param {() => void} open
   * @param {() => void} end
   */
  #poll(url, receive, open, end) {
    const abort = new AbortController();
    const { pollWaitMs, openTimeoutMs } = this.#options;
    (async () => {
      let first = true;
      while (!abort.signal.aborted) {
        const waitMs = first && this.cursor ? 0 : pollWaitMs;
        const timeout = setTimeout(() => abort.abort(), waitMs + openTimeoutMs);
        try {
          const response = await fetch(url({ waitMs }), { signal: abort.signal });
          if (!response.ok) {
            // A cursor the edge does not take: the next connection starts afresh.
            if (response.status === 400 && this.cursor) this.cursor = undefined;
            return end();
          }
          const answer = await response.json();
          if (abort.signal.aborted) return;
          open();
          for (const frame of Array.isArray(answer.frames) ? answer.frames : []) receive(frame);
          if (typeof answer.cursor === "string" && answer.cursor) this.cursor = answer.cursor;
          first = false;
        } catch {
          return end();
        } finally {
          clearTimeout(timeout);
        }
      }
    })();
    return () => abort.abort();
  }
}

/**
 * @param {string} url
 * @param {(data: unknown) => void} receive
 * @param {() => void} end
 */
function openWebSocket(url, receive, end) {
  const ws = new WebSocket(url);
  ws.onmessage = (e) => typeof e.data === "string" && receive(e.data);
  ws.onclose = ws.onerror = () => end();
  return () => {
    ws.onclose = ws.onerror = ws.onmessage = null;
    ws.close();
  };
}

/**
 * EventSource reconnects by itself; here an error ends the connection instead, and the watch reconnects
 * (next edge, backoff, `?cursor=`).
 * @param {string} url
 * @param {(data: unknown, id?: string) => void} receive
 * @param {() => void} end
 */
function openEventSource(url, receive, end) {
  const es = new EventSource(url);
  es.onmessage = (e) => receive(e.data, e.lastEventId);
  es.onerror = () => end();
  return () => es.close();
}

/**
 * @typedef {object} PosterOptions
 * @property {string} ingest ingest base URL
 * @property {TokenSource} [token] bearer token; called again with `{ refresh: true }` after a 401
 * @property {() => Record<string, string>} [headers] extra headers of every post
 * @property {number} [maxRetries] retries of a 503, 429 (but slow mode) or network error (4)
 * @property {Backoff} [backoff] between retries of network errors and of 503/429 without Retry-After
 * @property {number} [retryAfterCapMs] longest wait a Retry-After may ask for (10000)
 * @property {typeof fetch} [fetch] for tests
 * @property {(ms: number) => Promise<unknown>} [sleep] for tests
 * @property {() => number} [random] for tests
 */

/** A refused post: `status` and the problem document (`type`, `title`, `status`, `detail`, `rule`). */
export class PostError extends Error {
  /**
   * @param {number} status
   * @param {Record<string, any>} problem
   */
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = "PostError";
    this.status = status;
    this.problem = problem;
    this.type = problem.type;
    this.title = problem.title;
    this.detail = problem.detail;
    /** @type {string | undefined} */
    this.rule = problem.rule;
  }
}

/**
 * Posts comments and likes to ingest; each resolves to `{event_id, partition, offset}`.
 * @param {PosterOptions} options
 */
export function createPoster(options) {
  const { ingest, token, headers, maxRetries = 4, backoff, retryAfterCapMs = 10000, random = Math.random } = options;
  const doFetch = options.fetch ?? ((input, init) => fetch(input, init));
  const wait = options.sleep ?? sleep;
  const base = ingest.replace(/\/+$/, "");

  /**
   * @param {string} stream
   * @param {"comments" | "likes"} what
   * @param {object} body
   * @returns {Promise<{ event_id: string, partition: number, offset: number }>}
   */
  async function post(stream, what, body) {
    const url = `${base}/v1/streams/${encodeURIComponent(stream)}/${what}`;
    const key = randomKey(); // one per logical post: ingest takes a retry as the same post
    let bearer = token ? await token() : undefined;
    let refreshed = false;
    for (let retries = 0; ; ) {
      /** @type {Record<string, string>} */
      const h = { "content-type": "application/json", ...headers?.(), "idempotency-key": key };
      if (bearer) h.authorization = `Bearer ${bearer}`;
      /** @type {Response} */
      let response;
      try {
        response = await doFetch(url, { method: "POST", headers: h, body: JSON.stringify(body) });
      } catch (error) {
        if (retries >= maxRetries) throw error;
        await wait(backoffDelay(retries++, backoff, random));
        continue;
      }
      if (response.ok) return response.json();
      if (response.status === 401 && token && !refreshed) {
        refreshed = true;
        bearer = await token({ refresh: true });
        continue;
      }
      const refusal = await problem(response);
      // Slow mode is the stream's rule, not an overload: not retried.
      const transient = (response.status === 503 || response.status === 429) && refusal.rule !== "slow_mode";
      if (transient && retries < maxRetries) {
        const after = retryAfterMs(response.headers.get("retry-after"));
        await wait(Math.min(retryAfterCapMs, after ?? backoffDelay(retries, backoff, random)));
        retries++;
        continue;
      }
      throw new PostError(response.status, refusal);
    }
  }

  return {
    /** @param {string} stream @param {string} text */
    comment: (stream, text) => post(stream, "comments", { text }),
    /** @param {string} stream */
    like: (stream) => post(stream, "likes", {}),
  };
}

/**
 * Retry-After in milliseconds (seconds or an HTTP date); undefined when absent or unreadable.
 * @param {string | null} value
 */
export function retryAfterMs(value, now = Date.now()) {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** @param {Response} response */
async function problem(response) {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") return body;
  } catch {}
  return { status: response.status, title: response.statusText, detail: text };
}

function randomKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // Pages served over plain http from a non-local host have no randomUUID: a v4 UUID by hand.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
