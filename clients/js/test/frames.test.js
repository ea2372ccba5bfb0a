import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeFrame } from "../src/chorus.js";

const comment = (id, text) => ({
  event_id: id,
  user_id: "alice",
  kind: "comment",
  text,
  created_ms: 1796018137709,
  origin: "local",
  topic: "events",
  offset: 42,
});

test("hello", () => {
  const text = JSON.stringify({
    type: "hello",
    stream_id: "demo",
    edge_id: "edge-a",
    join: [{ topic: "events", partition: 7, offset: 42 }],
    heartbeat_ms: 15000,
    likes_total: 118,
    cursor: "events/7/42",
    resumed: true,
  });
  const { frame, events } = decodeFrame(text);
  assert.equal(frame.type, "hello");
  assert.equal(frame.cursor, "events/7/42");
  assert.deepEqual(events.map((e) => e.type), ["hello"]);
  assert.equal(events[0].detail.likes_total, 118);
  assert.equal(events[0].detail.resumed, true);
});

test("events: one comment event per comment, in order", () => {
  const text = JSON.stringify({
    type: "events",
    stream_id: "demo",
    events: [comment("e1", "first"), comment("e2", "second"), { ...comment("e3"), kind: "like" }],
    cursor: "events/7/45",
  });
  const { frame, events } = decodeFrame(text);
  assert.equal(frame.cursor, "events/7/45");
  assert.deepEqual(events.map((e) => e.type), ["comment", "comment"]);
  assert.deepEqual(events.map((e) => e.detail.text), ["first", "second"]);
  assert.equal(events[0].detail.user_id, "alice");
});

test("likes, gap, reconnect, retract, viewers become events of their name", () => {
  const frames = [
    { type: "likes", stream_id: "demo", delta: 3, total: 120 },
    { type: "gap", stream_id: "demo", missed_frames: 12, reason: "slow_viewer" },
    { type: "gap", stream_id: "demo", reason: "sampled", missed_events: 1950 },
    { type: "gap", stream_id: "demo", reason: "not_resumed", missed_frames: 0 },
    { type: "reconnect", stream_id: "demo", reason: "drain", delay_ms: 350, cursor: "c" },
    { type: "retract", stream_id: "demo", event_ids: ["e1"] },
    { type: "viewers", stream_id: "demo", count: 7 },
  ];
  for (const f of frames) {
    const { events } = decodeFrame(JSON.stringify(f));
    assert.equal(events.length, 1, f.type);
    assert.equal(events[0].type, f.type);
    assert.deepEqual(events[0].detail, f);
  }
  assert.equal(decodeFrame(JSON.stringify(frames[0])).events[0].detail.delta, 3);
  assert.equal(decodeFrame(JSON.stringify(frames[2])).events[0].detail.missed_events, 1950);
});

test("an unknown type is a frame with no typed event", () => {
  const decoded = decodeFrame('{"type":"poll_results","stream_id":"demo","options":[1,2]}');
  assert.ok(decoded);
  assert.equal(decoded.frame.type, "poll_results");
  assert.deepEqual(decoded.frame.options, [1, 2]);
  assert.deepEqual(decoded.events, []);
});

test("long-poll frames come as objects", () => {
  const { events } = decodeFrame({ type: "likes", stream_id: "demo", delta: 1, total: 2 });
  assert.equal(events[0].detail.total, 2);
});

test("what is not a frame is ignored", () => {
  for (const bad of ["not json", "[1,2]", "null", '{"no":"type"}', '{"type":3}', 42, null]) {
    assert.equal(decodeFrame(bad), undefined, String(bad));
  }
  assert.deepEqual(decodeFrame('{"type":"events"}').events, [], "events frame without events");
});

test("a hello with viewers is followed by a viewers event with that count", () => {
  const { events } = decodeFrame(JSON.stringify({ type: "hello", stream_id: "demo", edge_id: "e", viewers: 1204 }));
  assert.deepEqual(events.map((e) => e.type), ["hello", "viewers"]);
  assert.equal(events[0].detail.viewers, 1204);
  assert.deepEqual(events[1].detail, { type: "viewers", stream_id: "demo", count: 1204 });
});

test("retract: event_ids is always an array of strings", () => {
  const { events } = decodeFrame({ type: "retract", stream_id: "demo", event_ids: ["e1", 7, null, "e2"] });
  assert.deepEqual(events, [{ type: "retract", detail: { type: "retract", stream_id: "demo", event_ids: ["e1", "e2"] } }]);
  assert.deepEqual(decodeFrame('{"type":"retract","stream_id":"demo"}').events[0].detail.event_ids, []);
});
