// The watch against fake transports: WebSocket, EventSource and fetch replaced by scripted ones.
import { test, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { watchStream } from "../src/chorus.js";

const A = "http://edge-a:8081";
const B = "http://edge-b:8081";

/** Every connection opened, in order: { kind, url, ...controls }. */
let opened = [];
/** Decides what a new connection does: (connection) => void. */
let script = () => {};
const saved = {};

class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.onmessage = this.onclose = this.onerror = null;
    this.closed = false;
    const conn = {
      kind: "ws",
      url,
      socket: this,
      send: (frame) => this.onmessage?.({ data: JSON.stringify(frame) }),
      fail: () => (this.onerror?.({}), this.onclose?.({})),
    };
    opened.push(conn);
    const run = script; // the script of the test that opened it
    setTimeout(() => this.closed || run(conn), 0);
  }
  close() {
    this.closed = true;
  }
}

class FakeEventSource {
  constructor(url) {
    this.url = url;
    this.closed = false;
    const conn = {
      kind: "sse",
      url,
      socket: this,
      send: (frame, id = "") => this.onmessage?.({ data: JSON.stringify(frame), lastEventId: id }),
      fail: () => this.onerror?.({}),
    };
    opened.push(conn);
    const run = script; // the script of the test that opened it
    setTimeout(() => this.closed || run(conn), 0);
  }
  close() {
    this.closed = true;
  }
}

/** Long-poll: the script answers with conn.answer(status, body). */
async function fakeFetch(url, init) {
  return new Promise((resolve, reject) => {
    const conn = {
      kind: "poll",
      url,
      answer: (status, body) => resolve(new Response(JSON.stringify(body), { status })),
      fail: () => reject(new TypeError("fetch failed")),
    };
    const signal = init?.signal;
    signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
    opened.push(conn);
    const run = script;
    setTimeout(() => signal?.aborted || run(conn), 0);
  });
}

beforeEach(() => {
  opened = [];
  script = () => {};
  for (const name of ["WebSocket", "EventSource", "fetch"]) saved[name] = globalThis[name];
  globalThis.WebSocket = FakeWebSocket;
  globalThis.EventSource = FakeEventSource;
  globalThis.fetch = fakeFetch;
});

afterEach(() => {
  for (const [name, value] of Object.entries(saved)) globalThis[name] = value;
});

async function waitFor(condition, what, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const hello = (extra = {}) => ({ type: "hello", stream_id: "demo", edge_id: "e", join: [], heartbeat_ms: 15000, likes_total: 0, ...extra });
const events = (ids, cursor) => ({
  type: "events",
  stream_id: "demo",
  events: ids.map((id) => ({ event_id: id, user_id: "u", kind: "comment", text: `t-${id}`, created_ms: 1 })),
  cursor,
});
const first = () => 0; // random(): start at the first edge, no backoff delay

function record(watch, ...types) {
  const seen = [];
  for (const type of types) watch.on(type, (detail) => seen.push({ ...detail, on: type }));
  return seen;
}

test("WebSocket first; an error before open falls back to SSE, then to long-poll", async () => {
  script = (c) => (c.kind === "poll" ? c.answer(200, { cursor: "c1", frames: [hello()] }) : c.fail());
  const watch = watchStream({ edges: [A], stream: "demo", random: first });
  const statuses = record(watch, "status");
  await waitFor(() => watch.state === "connected", "connected");
  assert.deepEqual(opened.slice(0, 3).map((c) => c.kind), ["ws", "sse", "poll"]);
  assert.equal(opened[0].url, "ws://edge-a:8081/v1/streams/demo/ws");
  assert.equal(opened[1].url, "http://edge-a:8081/v1/streams/demo/sse");
  assert.equal(opened[2].url, "http://edge-a:8081/v1/streams/demo/poll?wait_ms=25000");
  assert.equal(watch.transport, "poll");
  assert.deepEqual(
    statuses.slice(0, 4).map((s) => `${s.transport} ${s.state}`),
    ["ws connecting", "sse connecting", "poll connecting", "poll connected"],
  );
  watch.close();
});

test("a WebSocket that opens and closes without a frame counts as not opened", async () => {
  script = (c) => (c.kind === "ws" ? c.socket.onclose?.({}) : c.send(hello()));
  const watch = watchStream({ edges: [A], stream: "demo", random: first });
  await waitFor(() => watch.state === "connected", "connected");
  assert.equal(watch.transport, "sse");
  watch.close();
});

test("no hello within openTimeoutMs: the next transport", async () => {
  script = (c) => c.kind === "sse" && c.send(hello());
  const watch = watchStream({ edges: [A], stream: "demo", random: first, openTimeoutMs: 50 });
  const started = Date.now();
  await waitFor(() => watch.state === "connected", "connected");
  assert.equal(watch.transport, "sse");
  assert.ok(Date.now() - started >= 45, "waited for the open timeout");
  assert.ok(opened[0].socket.closed, "the silent WebSocket was closed");
  watch.close();
});

test("resume: the last cursor goes on the next connection, to the next edge", async () => {
  let n = 0;
  script = (c) => {
    n += 1;
    if (n === 1) {
      c.send(hello({ cursor: "events/1/5" }));
      c.send(events(["e1"], "events/1/6"));
      c.fail();
    } else c.send(hello({ resumed: true, cursor: "events/1/6" }));
  };
  const watch = watchStream({ edges: [A, B], stream: "demo", random: first });
  const hellos = record(watch, "hello");
  await waitFor(() => hellos.length === 2, "second hello");
  assert.equal(opened[0].url, "ws://edge-a:8081/v1/streams/demo/ws");
  assert.equal(opened[1].url, "ws://edge-b:8081/v1/streams/demo/ws?cursor=events%2F1%2F6");
  assert.equal(hellos[1].resumed, true);
  assert.equal(watch.cursor, "events/1/6");
  watch.close();
});

test("SSE: each message's id is the cursor", async () => {
  let n = 0;
  script = (c) => {
    if (c.kind === "ws") return c.fail();
    n += 1;
    if (n === 1) {
      c.send(hello(), "events/2/0");
      c.send(events(["x"]), "events/2/1");
      c.fail();
    } else c.send(hello());
  };
  const watch = watchStream({ edges: [A], stream: "demo", random: first });
  await waitFor(() => opened.filter((c) => c.kind === "sse").length === 2 && watch.state === "connected", "resumed");
  const sse = opened.filter((c) => c.kind === "sse");
  assert.equal(sse[1].url, "http://edge-a:8081/v1/streams/demo/sse?cursor=events%2F2%2F1");
  watch.close();
});

test("once a transport worked, reconnects try it first", async () => {
  let sse = 0;
  script = (c) => {
    if (c.kind === "ws") return c.fail();
    sse += 1;
    c.send(hello());
    if (sse === 1) c.fail();
  };
  const watch = watchStream({ edges: [A], stream: "demo", random: first });
  await waitFor(() => sse === 2 && watch.state === "connected", "reconnected");
  assert.deepEqual(opened.map((c) => c.kind), ["ws", "sse", "sse"]);
  watch.close();
});

test("a reconnect frame's delay_ms is honoured instead of the backoff, and the edge changes", async () => {
  let n = 0;
  let reconnectAt = 0;
  script = (c) => {
    n += 1;
    c.send(hello());
    if (n === 1) {
      reconnectAt = Date.now();
      c.send({ type: "reconnect", stream_id: "demo", reason: "drain", delay_ms: 120, cursor: "events/3/9" });
    }
  };
  // random() near 1: the backoff would be ~10 s, and the start edge is the last one.
  const watch = watchStream({ edges: [A, B], stream: "demo", random: () => 0.999, backoff: { baseMs: 10000, capMs: 10000 } });
  const reconnects = record(watch, "reconnect");
  await waitFor(() => n === 2, "second connection");
  const waited = Date.now() - reconnectAt;
  assert.ok(waited >= 110 && waited < 2000, `waited ${waited} ms`);
  assert.equal(reconnects[0].reason, "drain");
  assert.equal(opened[0].url, "ws://edge-b:8081/v1/streams/demo/ws");
  assert.equal(opened[1].url, "ws://edge-a:8081/v1/streams/demo/ws?cursor=events%2F3%2F9");
  assert.ok(opened[0].socket.closed);
  watch.close();
});

test("backoff grows while nothing opens and starts over after a hello", async () => {
  const starts = [];
  let healthy = false;
  script = (c) => {
    if (c.kind !== "ws") return c.kind === "poll" ? c.fail() : c.fail();
    starts.push(Date.now());
    if (healthy) {
      healthy = false;
      c.send(hello());
      c.fail();
    } else c.fail();
  };
  const watch = watchStream({ edges: [A], stream: "demo", random: () => 0.999, backoff: { baseMs: 40, capMs: 100000 } });
  await waitFor(() => starts.length === 5, "five cycles", 5000);
  const gaps = starts.slice(1).map((t, i) => t - starts[i]);
  // ceilings 40, 80, 160, 320 (random 0.999): each wait about twice the one before
  assert.ok(gaps[3] > 250, `gaps ${gaps}`);
  assert.ok(gaps[3] > gaps[0] * 3, `gaps ${gaps}`);
  healthy = true;
  await waitFor(() => starts.length === 7, "two more cycles", 5000);
  const afterHello = starts[6] - starts[5];
  assert.ok(afterHello < 250, `after a hello the backoff starts over: ${afterHello} ms`);
  watch.close();
});

test("repeated events are dropped, across reconnects too; order is kept", async () => {
  let n = 0;
  script = (c) => {
    n += 1;
    c.send(hello());
    if (n === 1) {
      c.send(events(["a", "b"]));
      c.send(events(["b", "c"]));
      c.fail();
    } else c.send(events(["c", "d"]));
  };
  const watch = watchStream({ edges: [A, B], stream: "demo", random: first });
  const comments = record(watch, "comment");
  const frames = record(watch, "frame");
  await waitFor(() => comments.length === 4, "four comments");
  assert.deepEqual(comments.map((c) => c.event_id), ["a", "b", "c", "d"]);
  assert.equal(comments[0].text, "t-a");
  assert.equal(frames.filter((f) => f.type === "events").length, 3, "every frame raw");
  watch.close();
});

test("likes, gap, retract, viewers and unknown frames are surfaced", async () => {
  script = (c) => {
    c.send(hello({ likes_total: 5 }));
    c.send({ type: "likes", stream_id: "demo", delta: 2, total: 7 });
    c.send({ type: "gap", stream_id: "demo", reason: "sampled", missed_events: 9 });
    c.send({ type: "retract", stream_id: "demo", event_ids: ["a"] });
    c.send({ type: "viewers", stream_id: "demo", count: 3 });
    c.send({ type: "future", stream_id: "demo" });
  };
  const watch = watchStream({ edges: [A], stream: "demo", random: first });
  const seen = record(watch, "hello", "likes", "gap", "retract", "viewers", "frame");
  await waitFor(() => seen.filter((s) => s.on === "frame").length === 6, "six frames");
  const typed = seen.filter((s) => s.on !== "frame");
  assert.deepEqual(typed.map((s) => s.on), ["hello", "likes", "gap", "retract", "viewers"]);
  assert.equal(typed[1].total, 7);
  assert.equal(typed[2].missed_events, 9);
  assert.equal(typed[4].count, 3);
  assert.deepEqual(seen.at(-1), { type: "future", stream_id: "demo", on: "frame" }, "an unknown type is a frame");
  watch.close();
});

test("retract: the ids come as an event, and a taken-down comment that comes again is dropped", async () => {
  let n = 0;
  script = (c) => {
    n += 1;
    c.send(hello());
    if (n === 1) {
      c.send(events(["a", "b"]));
      c.send({ type: "retract", stream_id: "demo", event_ids: ["b", "never-seen"] });
      c.fail();
    } else c.send(events(["b", "c"])); // a resume elsewhere brings "b" again
  };
  const watch = watchStream({ edges: [A, B], stream: "demo", random: first });
  const seen = record(watch, "comment", "retract");
  await waitFor(() => seen.some((s) => s.event_id === "c"), "the comment after the reconnect");
  assert.deepEqual(
    seen.map((s) => (s.on === "comment" ? s.event_id : `retract ${s.event_ids}`)),
    ["a", "b", "retract b,never-seen", "c"],
  );
  watch.close();
});

test("viewers: the count of hello first, then each viewers frame, also as watch.viewers", async () => {
  script = (c) => {
    c.send(hello({ viewers: 41 }));
    c.send({ type: "viewers", stream_id: "demo", count: 42 });
  };
  const watch = watchStream({ edges: [A], stream: "demo", random: first });
  assert.equal(watch.viewers, undefined, "nothing told yet");
  const counts = record(watch, "viewers");
  await waitFor(() => counts.length === 2, "two counts");
  assert.deepEqual(counts.map((c) => c.count), [41, 42]);
  assert.equal(watch.viewers, 42);
  watch.close();
});

test("the access token goes on the viewer URL", async () => {
  script = (c) => c.send(hello());
  const watch = watchStream({ edges: [A], stream: "demo", random: first, token: async () => "tok en" });
  await waitFor(() => watch.state === "connected", "connected");
  assert.equal(opened[0].url, "ws://edge-a:8081/v1/streams/demo/ws?access_token=tok%20en");
  watch.close();
});

test("long-poll: the answer's cursor is sent back; a resume poll does not wait", async () => {
  let polls = 0;
  script = (c) => {
    if (c.kind !== "poll") return c.fail();
    polls += 1;
    if (polls === 1) c.answer(200, { cursor: "events/0/1", frames: [hello()] });
    else if (polls === 2) c.answer(200, { cursor: "events/0/2", frames: [events(["p1"])] });
    else if (polls === 3) c.fail();
    // later polls hang: the watch is waiting for news
  };
  const watch = watchStream({ edges: [A], stream: "demo", random: first });
  const comments = record(watch, "comment");
  await waitFor(() => polls === 4, "fourth poll");
  const urls = opened.filter((c) => c.kind === "poll").map((c) => c.url);
  assert.equal(urls[1], "http://edge-a:8081/v1/streams/demo/poll?cursor=events%2F0%2F1&wait_ms=25000");
  assert.equal(urls[2], "http://edge-a:8081/v1/streams/demo/poll?cursor=events%2F0%2F2&wait_ms=25000");
  // after the failure, the watch reconnects on long-poll (it worked) and resumes without waiting
  assert.equal(opened.at(-1).kind, "poll");
  assert.equal(urls[3], "http://edge-a:8081/v1/streams/demo/poll?cursor=events%2F0%2F2&wait_ms=0");
  assert.deepEqual(comments.map((c) => c.event_id), ["p1"]);
  watch.close();
});

test("close() ends the connection and nothing reconnects", async () => {
  script = (c) => c.send(hello());
  const watch = watchStream({ edges: [A], stream: "demo", random: first });
  const statuses = record(watch, "status");
  await waitFor(() => watch.state === "connected", "connected");
  watch.close();
  assert.equal(watch.state, "closed");
  assert.ok(opened[0].socket.closed);
  opened[0].fail(); // late events from the closed socket change nothing
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(opened.length, 1);
  assert.equal(statuses.at(-1).state, "closed");
});

test("close() during a backoff wait: no further connection", async () => {
  script = (c) => c.fail();
  const watch = watchStream({ edges: [A], stream: "demo", random: () => 0.999, backoff: { baseMs: 100, capMs: 100 } });
  await waitFor(() => opened.length === 3 && watch.state === "reconnecting", "first cycle failed");
  watch.close();
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(opened.length, 3);
});

test("a transport missing from the platform is skipped", async () => {
  delete globalThis.WebSocket;
  script = (c) => c.send(hello());
  const watch = watchStream({ edges: [A], stream: "demo", random: first });
  await waitFor(() => watch.state === "connected", "connected");
  assert.equal(watch.transport, "sse");
  watch.close();
});
