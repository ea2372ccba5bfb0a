// The demo page in Chromium against a real stack: two viewers see one comment once each and the likes; the
// fallback to SSE and to long-poll; a drained edge; a screenshot. Each test watches a stream of its own.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { launch } from "./browser.js";
import { outDir, startStack, until } from "./stack.js";

/** @type {Awaited<ReturnType<typeof startStack>>} */
let stack;

before(async () => {
  stack = await startStack();
});

after(async () => {
  await stack?.stop();
});

const streamId = (/** @type {string} */ name) => `${name}-${randomBytes(4).toString("hex")}`;

/**
 * Runs `body` with a fresh browser; on failure prints the stack's logs and the pages' console errors.
 * @param {(browser: Awaited<ReturnType<typeof launch>>) => Promise<void>} body
 */
async function withBrowser(body) {
  const browser = await launch();
  try {
    await body(browser);
  } catch (error) {
    stack.printLogs();
    if (browser.problems.length) console.error(`\n===== browser =====\n${browser.problems.join("\n")}`);
    throw error;
  } finally {
    await browser.close();
  }
}

/**
 * Opens the demo page on `stream` as `user`; `prepare` runs before navigation (routes).
 * @param {Awaited<ReturnType<typeof launch>>} browser
 * @param {string} stream
 * @param {string} user
 * @param {(page: import("playwright-core").Page) => Promise<void>} [prepare]
 */
async function openDemo(browser, stream, user, prepare) {
  const page = await browser.newPage();
  await prepare?.(page);
  await page.goto(`${stack.demo}/?stream=${encodeURIComponent(stream)}&user=${encodeURIComponent(user)}`);
  return page;
}

/**
 * Waits until the page's status says it is connected (over `transport`, when given).
 * @param {import("playwright-core").Page} page
 * @param {string} [transport]
 */
async function connected(page, transport, timeout = 20_000) {
  await page.waitForFunction(
    (t) => {
      const s = document.querySelector('[role="status"]');
      return s instanceof HTMLElement && s.dataset.state === "connected" && (!t || s.dataset.transport === t);
    },
    transport,
    { timeout },
  );
  return (await page.getByRole("status").textContent()) ?? "";
}

/** The comments the page shows, in order. @param {import("playwright-core").Page} page */
function shown(page) {
  return page.$$eval('[data-testid="comment"]', (items) =>
    items.map((li) => ({ user: li.querySelector(".user")?.textContent ?? "", text: li.querySelector(".text")?.textContent ?? "" })),
  );
}

/** @param {import("playwright-core").Page} page */
async function likesTotal(page) {
  return Number(await page.getByTestId("likes-total").textContent());
}

/**
 * Waits until the page shows every one of `texts`.
 * @param {import("playwright-core").Page} page
 * @param {string[]} texts
 */
async function showsAll(page, texts, ms = 10_000) {
  await until(
    `the page to show ${texts.length} comments`,
    async () => {
      const have = new Set((await shown(page)).map((c) => c.text));
      return texts.every((t) => have.has(t));
    },
    ms,
  ).catch(async (error) => {
    const have = new Set((await shown(page)).map((c) => c.text));
    const missing = texts.filter((t) => !have.has(t));
    throw new Error(`${error.message}; ${missing.length} missing: ${missing.slice(0, 30).join(", ")}`);
  });
}

/** @param {string[]} list @param {string} text */
const count = (list, text) => list.filter((t) => t === text).length;

test("a comment sent on one page appears on both once; a like raises both totals", { timeout: 90_000 }, async () => {
  await withBrowser(async (browser) => {
    const stream = streamId("two-pages");
    const alice = await openDemo(browser, stream, "alice");
    const bob = await openDemo(browser, stream, "bob");
    assert.match(await connected(alice), /websocket · connected/);
    assert.match(await connected(bob), /websocket · connected/);

    const text = `hello from alice ${randomBytes(3).toString("hex")}`;
    await alice.getByLabel("Comment").fill(text);
    const sent = Date.now();
    await alice.getByRole("button", { name: "Send", exact: true }).click();
    for (const page of [alice, bob]) {
      await until("the comment on both pages", async () => (await shown(page)).some((c) => c.text === text), 2_000);
    }
    const latency = Date.now() - sent;
    assert.ok(latency <= 2_000, `shown on both within 2 s (took ${latency} ms)`);
    assert.equal(await alice.getByLabel("Comment").inputValue(), "", "the box clears after the 202");

    const before = [await likesTotal(alice), await likesTotal(bob)];
    await alice.getByRole("button", { name: /^Like/ }).click();
    for (const [i, page] of [alice, bob].entries()) {
      await until("the likes total to rise", async () => (await likesTotal(page)) > before[i], 10_000);
    }
    const name = await alice.getByRole("button", { name: /^Like/ }).textContent();
    assert.match(name ?? "", new RegExp(`Like \\(${await likesTotal(alice)}\\)`));

    // Still exactly once each, now that the likes went through too.
    for (const page of [alice, bob]) {
      const comments = await shown(page);
      assert.equal(count(comments.map((c) => c.text), text), 1, "exactly once");
      assert.equal(comments.find((c) => c.text === text)?.user, "alice");
    }
    assert.equal(await alice.getByRole("alert").textContent(), "", "no error shown");
  });
});

test("WebSocket refused: SSE; SSE refused too: long-poll; comments show on both", { timeout: 90_000 }, async () => {
  await withBrowser(async (browser) => {
    const stream = streamId("fallback");
    const noWebSocket = async (/** @type {import("playwright-core").Page} */ page) => {
      await page.routeWebSocket(/\/ws/, (ws) => ws.close());
    };

    const sse = await openDemo(browser, stream, "carol", noWebSocket);
    assert.match(await connected(sse, "sse"), /\bsse · connected/);
    const first = ["over SSE one", "over SSE two", "over SSE three"];
    for (const [i, text] of first.entries()) await stack.comment(stream, `sse-user-${i}`, text);
    await showsAll(sse, first);

    const poll = await openDemo(browser, stream, "dave", async (page) => {
      await noWebSocket(page);
      await page.route(/\/sse/, (route) => route.abort());
    });
    assert.match(await connected(poll, "poll"), /long-poll · connected/);
    const second = ["over long-poll one", "over long-poll two", "over long-poll three"];
    for (const [i, text] of second.entries()) await stack.comment(stream, `poll-user-${i}`, text);
    await showsAll(poll, second);
    await showsAll(sse, second);
    for (const page of [sse, poll]) {
      const texts = (await shown(page)).map((c) => c.text);
      for (const text of second) assert.equal(count(texts, text), 1, `${text} once`);
    }
    assert.match((await sse.getByRole("status").textContent()) ?? "", /^sse · /, "still on SSE");
  });
});

test("the page's edge drains: it moves to the other edge and misses no comment, none twice", { timeout: 120_000 }, async () => {
  await withBrowser(async (browser) => {
    const stream = streamId("drain");
    const page = await openDemo(browser, stream, "erin");
    await connected(page);
    const edgeOf = async () => page.getByRole("status").getAttribute("data-edge");
    const joined = await edgeOf();
    const first = stack.edges.find((e) => e.url === joined);
    assert.ok(first, "the page is on one of the stack's edges");
    const other = stack.edges.find((e) => e !== first);

    // Comments posted steadily (one every ~50 ms) from before the drain until after the page reconnected.
    /** @type {string[]} */
    const posted = [];
    let stop = false;
    const posting = (async () => {
      for (let i = 0; !stop && i < 250; i++) {
        const text = `drain ${String(i).padStart(3, "0")}`;
        await stack.comment(stream, `drain-user-${i}`, text);
        posted.push(text);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await until("a few comments before the drain", async () => (await shown(page)).length >= 5, 10_000);
      await stack.drain(first);
      await until(
        `the page on ${other?.id}`,
        async () => (await edgeOf()) === other?.url && (await page.getByRole("status").getAttribute("data-state")) === "connected",
        20_000,
      );
      const atReconnect = posted.length;
      await until("comments after the reconnect", async () => posted.length >= atReconnect + 20, 10_000);
    } finally {
      stop = true;
      await posting;
    }

    await showsAll(page, posted);
    const texts = (await shown(page)).map((c) => c.text);
    assert.deepEqual(texts, posted, "every comment exactly once, in order");
  });
});

test("a screenshot of the demo page with comments", { timeout: 90_000 }, async () => {
  await withBrowser(async (browser) => {
    const stream = streamId("screenshot");
    const page = await openDemo(browser, stream, "you");
    await connected(page);
    const chat = [
      ["maria", "Here we go, kick-off!"],
      ["jonas", "Watching from Lisbon"],
      ["aiko", "That pass was unreal"],
      ["sam", "Ref needs glasses 😅"],
      ["priya", "What a save!!"],
      ["li", "Best match of the season so far"],
      ["tom", "Anyone else hear that crowd?"],
    ];
    for (const [user, text] of chat) await stack.comment(stream, user, text);
    for (const user of ["maria", "jonas", "aiko"]) await stack.like(stream, user);
    await page.getByLabel("Comment").fill("Hello from the demo page");
    await page.keyboard.press("Enter");
    await showsAll(page, [...chat.map(([, text]) => text), "Hello from the demo page"]);
    await until("the likes", async () => (await likesTotal(page)) >= 3, 10_000);

    fs.mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, "demo.png");
    fs.rmSync(file, { force: true });
    await page.screenshot({ path: file, fullPage: true });
    const size = fs.statSync(file).size;
    assert.ok(size > 20_000, `the screenshot has content (${size} bytes)`);
  });
});
