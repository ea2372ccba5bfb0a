import { test } from "node:test";
import assert from "node:assert/strict";
import { createPoster, retryAfterMs, PostError } from "../src/chorus.js";

const accepted = { event_id: "01a22b05-d119-772d-8d96-e8df02d9820d", partition: 11, offset: 0 };

/** A fake fetch answering from `answers` in turn, recording every request. */
function fakeFetch(answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, method: init.method, headers: new Headers(init.headers), body: init.body });
    const next = answers.shift();
    if (!next) throw new Error("no more answers");
    if (next instanceof Error) throw next;
    const [status, body, headers = {}] = next;
    const type = status === 202 ? "application/json" : "application/problem+json";
    return new Response(JSON.stringify(body), { status, headers: { "content-type": type, ...headers } });
  };
  return { fetch, calls };
}

const problem = (status, title, detail) => ({ type: `https://chorus.dev/problems/${status}`, title, status, detail });

function recordSleeps() {
  const slept = [];
  return { slept, sleep: async (ms) => void slept.push(ms) };
}

test("a comment: POST with JSON body, content type, idempotency key and extra headers; resolves to the 202 body", async () => {
  const { fetch, calls } = fakeFetch([[202, accepted]]);
  const poster = createPoster({ ingest: "http://127.0.0.1:8080/", fetch, headers: () => ({ "x-user-id": "alice" }) });
  assert.deepEqual(await poster.comment("demo", "What a catch!"), accepted);
  assert.equal(calls.length, 1);
  const [call] = calls;
  assert.equal(call.url, "http://127.0.0.1:8080/v1/streams/demo/comments");
  assert.equal(call.method, "POST");
  assert.deepEqual(JSON.parse(call.body), { text: "What a catch!" });
  assert.equal(call.headers.get("content-type"), "application/json");
  assert.equal(call.headers.get("x-user-id"), "alice");
  assert.match(call.headers.get("idempotency-key"), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(call.headers.get("authorization"), null);
});

test("a like posts to /likes; each logical post has its own key", async () => {
  const { fetch, calls } = fakeFetch([[202, accepted], [202, accepted]]);
  const poster = createPoster({ ingest: "http://i", fetch });
  await poster.like("demo");
  await poster.like("demo");
  assert.equal(calls[0].url, "http://i/v1/streams/demo/likes");
  assert.deepEqual(JSON.parse(calls[0].body), {});
  assert.notEqual(calls[0].headers.get("idempotency-key"), calls[1].headers.get("idempotency-key"));
});

test("503 and 429 are retried after Retry-After, with the same Idempotency-Key every time", async () => {
  const { fetch, calls } = fakeFetch([
    [503, problem(503, "Service unavailable", "Kafka did not acknowledge"), { "retry-after": "2" }],
    [429, problem(429, "Too many requests", "slow down"), { "retry-after": "1" }],
    [202, accepted],
  ]);
  const { slept, sleep } = recordSleeps();
  const poster = createPoster({ ingest: "http://i", fetch, sleep });
  assert.deepEqual(await poster.comment("demo", "hi"), accepted);
  assert.equal(calls.length, 3);
  assert.deepEqual(slept, [2000, 1000]);
  const keys = new Set(calls.map((c) => c.headers.get("idempotency-key")));
  assert.equal(keys.size, 1, "one key for the logical post");
});

test("Retry-After is capped", async () => {
  const { fetch } = fakeFetch([[503, problem(503, "Unavailable", "x"), { "retry-after": "3600" }], [202, accepted]]);
  const { slept, sleep } = recordSleeps();
  const poster = createPoster({ ingest: "http://i", fetch, sleep, retryAfterCapMs: 5000 });
  await poster.like("demo");
  assert.deepEqual(slept, [5000]);
});

test("retries are bounded: after maxRetries the 503 is the error, with status and problem", async () => {
  const body = problem(503, "Service unavailable", "Kafka did not acknowledge");
  const { fetch, calls } = fakeFetch(Array.from({ length: 10 }, () => [503, body, { "retry-after": "1" }]));
  const { sleep } = recordSleeps();
  const poster = createPoster({ ingest: "http://i", fetch, sleep, maxRetries: 2 });
  const error = await poster.comment("demo", "hi").catch((e) => e);
  assert.ok(error instanceof PostError);
  assert.ok(error instanceof Error);
  assert.equal(calls.length, 3, "the first try and two retries");
  assert.equal(error.status, 503);
  assert.deepEqual(error.problem, body);
  assert.equal(error.title, "Service unavailable");
  assert.equal(error.detail, "Kafka did not acknowledge");
});

test("other errors are not retried and reject with the problem document", async () => {
  const body = { ...problem(422, "Invalid field", "text must not be blank"), field: "text" };
  const { fetch, calls } = fakeFetch([[422, body]]);
  const poster = createPoster({ ingest: "http://i", fetch, sleep: async () => assert.fail("no retry") });
  const error = await poster.comment("demo", " ").catch((e) => e);
  assert.equal(calls.length, 1);
  assert.equal(error.status, 422);
  assert.equal(error.type, body.type);
  assert.equal(error.problem.field, "text");
  assert.equal(error.message, "text must not be blank");
});

test("moderation refusals are not retried and name their rule; slow mode's 429 neither", async () => {
  const banned = { ...problem(403, "Banned", "you are banned from this stream"), rule: "banned", until_ms: 1796018137709 };
  const slow = { ...problem(429, "Slow mode", "one comment every 30 s"), rule: "slow_mode" };
  const { fetch, calls } = fakeFetch([[403, banned], [429, slow, { "retry-after": "12" }]]);
  const poster = createPoster({ ingest: "http://i", fetch, sleep: async () => assert.fail("no retry") });
  const ban = await poster.comment("demo", "hi").catch((e) => e);
  assert.equal(ban.status, 403);
  assert.equal(ban.rule, "banned");
  assert.equal(ban.problem.until_ms, 1796018137709);
  const wait = await poster.comment("demo", "again").catch((e) => e);
  assert.ok(wait instanceof PostError);
  assert.equal(wait.status, 429);
  assert.equal(wait.rule, "slow_mode");
  assert.equal(calls.length, 2, "one request each");
});

test("network errors are retried with backoff, same key", async () => {
  const { fetch, calls } = fakeFetch([new TypeError("fetch failed"), new TypeError("fetch failed"), [202, accepted]]);
  const { slept, sleep } = recordSleeps();
  const poster = createPoster({ ingest: "http://i", fetch, sleep, random: () => 0.5, backoff: { baseMs: 100, capMs: 1000 } });
  assert.deepEqual(await poster.like("demo"), accepted);
  assert.deepEqual(slept, [50, 100], "full jitter of 100, then of 200");
  assert.equal(new Set(calls.map((c) => c.headers.get("idempotency-key"))).size, 1);
});

test("a network error past maxRetries rejects with it", async () => {
  const { fetch, calls } = fakeFetch([new TypeError("a"), new TypeError("b")]);
  const poster = createPoster({ ingest: "http://i", fetch, sleep: async () => {}, maxRetries: 1 });
  await assert.rejects(poster.like("demo"), /b/);
  assert.equal(calls.length, 2);
});

test("bearer token; on a 401 the token is refreshed once and the post retried once", async () => {
  const { fetch, calls } = fakeFetch([[401, problem(401, "Unauthorized", "token expired")], [202, accepted]]);
  const asked = [];
  const token = async (options) => {
    asked.push(options);
    return options?.refresh ? "fresh" : "stale";
  };
  const poster = createPoster({ ingest: "http://i", fetch, token, sleep: async () => assert.fail("no wait") });
  assert.deepEqual(await poster.comment("demo", "hi"), accepted);
  assert.deepEqual(asked, [undefined, { refresh: true }]);
  assert.deepEqual(calls.map((c) => c.headers.get("authorization")), ["Bearer stale", "Bearer fresh"]);
  assert.equal(calls[0].headers.get("idempotency-key"), calls[1].headers.get("idempotency-key"));
});

test("a second 401 is the error", async () => {
  const body = problem(401, "Unauthorized", "bad signature");
  const { fetch, calls } = fakeFetch([[401, body], [401, body], [202, accepted]]);
  const poster = createPoster({ ingest: "http://i", fetch, token: async () => "t" });
  const error = await poster.like("demo").catch((e) => e);
  assert.equal(calls.length, 2);
  assert.equal(error.status, 401);
  assert.equal(error.detail, "bad signature");
});

test("without a token callback a 401 is not retried", async () => {
  const { fetch, calls } = fakeFetch([[401, problem(401, "Unauthorized", "no user")]]);
  const poster = createPoster({ ingest: "http://i", fetch });
  await assert.rejects(poster.like("demo"), (e) => e.status === 401);
  assert.equal(calls.length, 1);
});

test("Retry-After: seconds or an HTTP date", () => {
  assert.equal(retryAfterMs("3"), 3000);
  assert.equal(retryAfterMs(null), undefined);
  assert.equal(retryAfterMs("soon"), undefined);
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(retryAfterMs("Thu, 01 Jan 2026 00:00:05 GMT", now), 5000);
  assert.equal(retryAfterMs("Wed, 31 Dec 2025 00:00:05 GMT", now), 0);
});
