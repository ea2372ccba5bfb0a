import { test } from "node:test";
import assert from "node:assert/strict";
import { Dedup } from "../src/chorus.js";

test("a repeated id is dropped, a new one passes", () => {
  const dedup = new Dedup();
  assert.equal(dedup.add("a"), true);
  assert.equal(dedup.add("b"), true);
  assert.equal(dedup.add("a"), false);
  assert.equal(dedup.add("b"), false);
  assert.equal(dedup.add("c"), true);
});

test("memory is bounded: the oldest ids are forgotten first", () => {
  const dedup = new Dedup(3);
  for (const id of ["1", "2", "3", "4"]) assert.equal(dedup.add(id), true);
  assert.equal(dedup.size, 3);
  assert.equal(dedup.add("2"), false, "still remembered");
  assert.equal(dedup.add("1"), true, "the oldest was forgotten");
});

test("the default window holds 2000 ids", () => {
  const dedup = new Dedup();
  for (let i = 0; i < 5000; i++) dedup.add(`id-${i}`);
  assert.equal(dedup.size, 2000);
  assert.equal(dedup.add("id-4999"), false);
  assert.equal(dedup.add("id-3000"), false);
  assert.equal(dedup.add("id-2999"), true);
});
