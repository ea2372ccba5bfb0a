// The demo player page: live comments and likes of one stream beside a video placeholder.
import { watchStream, createPoster } from "./chorus.js";

/** @typedef {{ ingest: string, edges: string[], stream: string }} Config */

const TRANSPORT_NAMES = { ws: "websocket", sse: "sse", poll: "long-poll" };
const MAX_COMMENTS = 300;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

const query = new URLSearchParams(location.search);
const config = /** @type {Config} */ (
  await fetch("./config.json", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`config.json: ${r.status}`))))
    .catch((e) => {
      $("status").textContent = `Cannot load the page's configuration (${e.message})`;
      throw e;
    })
);
const stream = query.get("stream") || config.stream;
const user = query.get("user") || `viewer-${Math.random().toString(16).slice(2, 6)}`;

const list = $("comments");
const status = $("status");
const likesTotal = $("likes-total");
const viewers = $("viewers");
const error = $("error");
const input = /** @type {HTMLInputElement} */ ($("comment"));
const send = /** @type {HTMLButtonElement} */ ($("send"));

$("stream-title").textContent = stream;
$("me").textContent = user;
document.title = `${stream} · Chorus demo`;

/**
 * Appends an entry to the chat; it stays in view if the viewer was at the bottom.
 * @param {HTMLElement} item
 */
function append(item) {
  const following = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
  list.append(item);
  while (list.children.length > MAX_COMMENTS) list.firstElementChild?.remove();
  if (following) list.scrollTop = list.scrollHeight;
}

/**
 * @param {string} tag
 * @param {string} className
 * @param {string} [text]
 */
function el(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** @param {number} count */
function showViewers(count) {
  if (Number.isFinite(count)) viewers.textContent = String(count);
}

/** @param {number} total */
function showLikes(total) {
  if (Number.isFinite(total)) likesTotal.textContent = String(total);
}

const watch = watchStream({ edges: config.edges, stream });

watch.on("comment", (c) => {
  const item = el("li", "comment");
  item.dataset.testid = "comment";
  item.dataset.eventId = c.event_id;
  if (c.user_id === user) item.classList.add("mine");
  item.append(el("span", "user", c.user_id), el("span", "text", c.text ?? ""));
  append(item);
});

// Comments taken down by the stream's owner or a moderator leave the chat.
watch.on("retract", (r) => {
  const gone = new Set(r.event_ids);
  for (const item of list.querySelectorAll("li.comment")) {
    if (item instanceof HTMLElement && gone.has(item.dataset.eventId ?? "")) item.remove();
  }
});

// The count comes with hello, then whenever it changes (at most once a second).
watch.on("viewers", (v) => showViewers(v.count));

watch.on("gap", (g) => {
  const notes = {
    sampled: `Busy chat: ${g.missed_events ?? "some"} comments not shown`,
    slow_viewer: "Connection fell behind: some comments were skipped",
    not_resumed: "Reconnected: comments from the break may be missing",
  };
  const text = /** @type {Record<string, string>} */ (notes)[g.reason] ?? "Some comments were skipped";
  const item = el("li", "notice", text);
  item.dataset.testid = "gap";
  append(item);
});

watch.on("hello", (h) => {
  showLikes(h.likes_total);
  status.dataset.edgeId = h.edge_id ?? "";
});
watch.on("likes", (l) => showLikes(l.total));

watch.on("status", (s) => {
  const name = s.transport ? /** @type {Record<string, string>} */ (TRANSPORT_NAMES)[s.transport] : "";
  status.textContent = name ? `${name} · ${s.state}` : s.state;
  status.dataset.state = s.state;
  status.dataset.transport = s.transport ?? "";
  status.dataset.edge = s.edge ?? "";
});

const poster = createPoster({ ingest: config.ingest, headers: () => ({ "x-user-id": user }) });

/** @param {unknown} e */
function showError(e) {
  error.textContent = e instanceof Error ? `Not sent: ${e.message}` : "Not sent";
}

$("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || send.disabled) return;
  send.disabled = true;
  error.textContent = "";
  try {
    await poster.comment(stream, text);
    input.value = "";
  } catch (e) {
    showError(e);
  } finally {
    send.disabled = false;
    input.focus();
  }
});

$("like").addEventListener("click", async () => {
  error.textContent = "";
  try {
    await poster.like(stream);
  } catch (e) {
    showError(e);
  }
});
