import { test } from "node:test";
import assert from "node:assert/strict";
import { transportOrder, viewerUrl, TRANSPORTS } from "../src/chorus.js";

test("fallback order: ws, then sse, then poll", () => {
  assert.deepEqual(TRANSPORTS, ["ws", "sse", "poll"]);
  assert.deepEqual(transportOrder(TRANSPORTS), ["ws", "sse", "poll"]);
});

test("the transport that worked is tried first, then the others in order", () => {
  assert.deepEqual(transportOrder(TRANSPORTS, "sse"), ["sse", "ws", "poll"]);
  assert.deepEqual(transportOrder(TRANSPORTS, "poll"), ["poll", "ws", "sse"]);
  assert.deepEqual(transportOrder(TRANSPORTS, "ws"), ["ws", "sse", "poll"]);
  assert.deepEqual(transportOrder(["sse", "poll"], "ws"), ["sse", "poll"], "one not configured is ignored");
});

test("viewer URLs of each transport", () => {
  const edge = "http://127.0.0.1:8081";
  assert.equal(viewerUrl(edge, "demo", "ws"), "ws://127.0.0.1:8081/v1/streams/demo/ws");
  assert.equal(viewerUrl(edge, "demo", "sse"), "http://127.0.0.1:8081/v1/streams/demo/sse");
  assert.equal(viewerUrl(edge, "demo", "poll", { waitMs: 25000 }), "http://127.0.0.1:8081/v1/streams/demo/poll?wait_ms=25000");
});

test("https edges give wss; a path prefix is kept", () => {
  assert.equal(viewerUrl("https://live.example.com", "s", "ws"), "wss://live.example.com/v1/streams/s/ws");
  assert.equal(viewerUrl("https://live.example.com/chorus/", "s", "sse"), "https://live.example.com/chorus/v1/streams/s/sse");
});

test("cursor and access token are query parameters, encoded with encodeURIComponent", () => {
  const cursor = "events/7/42,eu.events/3/-";
  const query = { cursor, accessToken: "a.b+c/d=" };
  const encoded = "cursor=events%2F7%2F42%2Ceu.events%2F3%2F-&access_token=a.b%2Bc%2Fd%3D";
  assert.equal(viewerUrl("http://h:1", "demo", "ws", query), `ws://h:1/v1/streams/demo/ws?${encoded}`);
  assert.equal(viewerUrl("http://h:1", "demo", "sse", query), `http://h:1/v1/streams/demo/sse?${encoded}`);
  assert.equal(
    viewerUrl("http://h:1", "demo", "poll", { ...query, waitMs: 0 }),
    "http://h:1/v1/streams/demo/poll?cursor=events%2F7%2F42%2Ceu.events%2F3%2F-&wait_ms=0&access_token=a.b%2Bc%2Fd%3D",
  );
  assert.equal(new URL(viewerUrl("http://h:1", "demo", "sse", query)).searchParams.get("cursor"), cursor);
});

test("no cursor, no empty cursor parameter (an empty one is not a cursor)", () => {
  assert.equal(viewerUrl("http://h:1", "demo", "sse", { cursor: "" }), "http://h:1/v1/streams/demo/sse");
});

test("the stream id is escaped in the path", () => {
  assert.equal(viewerUrl("http://h:1", "a b/c", "sse"), "http://h:1/v1/streams/a%20b%2Fc/sse");
});
