import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay } from "../src/chorus.js";

test("full jitter: the delay lies in [0, base * 2^attempt)", () => {
  const backoff = { baseMs: 100, capMs: 100_000 };
  for (let attempt = 0; attempt < 6; attempt++) {
    const ceiling = 100 * 2 ** attempt;
    assert.equal(backoffDelay(attempt, backoff, () => 0), 0);
    assert.equal(backoffDelay(attempt, backoff, () => 0.5), ceiling / 2);
    assert.equal(backoffDelay(attempt, backoff, () => 0.999999), ceiling - 1);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(attempt, backoff);
      assert.ok(d >= 0 && d < ceiling, `attempt ${attempt}: ${d} outside [0, ${ceiling})`);
    }
  }
});

test("the ceiling stops at the cap", () => {
  const backoff = { baseMs: 500, capMs: 15_000 };
  assert.equal(backoffDelay(4, backoff, () => 0.5), 4_000); // 500 * 16 = 8000, below the cap
  assert.equal(backoffDelay(5, backoff, () => 0.5), 7_500); // 16000 capped to 15000
  assert.equal(backoffDelay(60, backoff, () => 0.999999), 14_999);
  assert.equal(backoffDelay(1e9, backoff, () => 0.5), 7_500);
});

test("defaults: 500 ms base, 15 s cap", () => {
  assert.equal(backoffDelay(0, undefined, () => 0.5), 250);
  assert.equal(backoffDelay(20, undefined, () => 0.5), 7_500);
});

test("spread: full jitter uses the whole range, not just its top", () => {
  const delays = Array.from({ length: 500 }, () => backoffDelay(3, { baseMs: 1000, capMs: 8000 }));
  assert.ok(Math.min(...delays) < 2000, "some short delays");
  assert.ok(Math.max(...delays) > 6000, "some long delays");
});
