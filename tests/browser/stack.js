// A real Chorus stack for the browser tests, from the built binary: a broker, ingest, fanout, two edges and the
// demo server, each a child process in a process group of its own, all killed at the end (and on failure).
// Every wait is bounded and waits on readiness (a port that accepts, `/readyz` answering 200), never on time.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { createPoster } from "../../clients/js/src/chorus.js";

export const repoRoot = path.resolve(import.meta.dirname, "../..");
export const chorusBin = process.env.CHORUS_BIN
  ? path.resolve(process.env.CHORUS_BIN)
  : path.join(repoRoot, "target/debug/chorus");
export const outDir = path.join(repoRoot, "target/browser");
const logDir = path.join(outDir, "logs");

/** @typedef {{ name: string, child: import("node:child_process").ChildProcess, log: string }} Child */
/** @type {Set<Child>} every child still running, killed if this process leaves without stopping them */
const running = new Set();

process.on("exit", () => {
  for (const { child } of running) kill(child, "SIGKILL");
});
for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM"])) {
  process.once(signal, () => process.exit(130));
}

/** @param {import("node:child_process").ChildProcess} child @param {NodeJS.Signals} signal */
function kill(child, signal) {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // its whole process group (scripts/broker execs tansu in it)
  } catch {
    try {
      child.kill(signal);
    } catch {}
  }
}

/** A port free on 127.0.0.1 now (bound to port 0, then closed). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * Runs `command` with its output in target/browser/logs/<name>.log.
 * @param {string} name
 * @param {string} command
 * @param {string[]} args
 */
function start(name, command, args) {
  const log = path.join(logDir, `${name}.log`);
  const fd = fs.openSync(log, "w");
  fs.writeSync(fd, `$ ${command} ${args.join(" ")}\n`);
  const child = spawn(command, args, {
    cwd: repoRoot,
    env: { ...process.env, CHORUS_LOG: "warn", RUST_LOG: "warn" },
    stdio: ["ignore", fd, fd],
    detached: true,
  });
  fs.closeSync(fd);
  const entry = { name, child, log };
  running.add(entry);
  child.on("exit", () => running.delete(entry));
  child.on("error", (error) => fs.appendFileSync(log, `spawn failed: ${error.message}\n`));
  return entry;
}

/**
 * Polls `check` until it is true; fails after `ms`, or at once when `child` has exited.
 * @param {string} what
 * @param {() => Promise<boolean>} check
 * @param {number} ms
 * @param {Child} [child]
 */
export async function until(what, check, ms, child) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child && (child.child.exitCode !== null || child.child.signalCode !== null)) {
      throw new Error(`${child.name} exited (${child.child.exitCode ?? child.child.signalCode}) before ${what}\n${tail(child.log)}`);
    }
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** @param {number} port */
function accepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(1000);
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => (socket.destroy(), resolve(false)));
  });
}

/** @param {string} url */
async function answers200(url) {
  const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
  await response.arrayBuffer();
  return response.status === 200;
}

/** @param {string} file */
function tail(file, lines = 60) {
  try {
    const text = fs.readFileSync(file, "utf8").trimEnd().split("\n");
    return text.slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** The broker subcommand of scripts/broker (`run`, or `start` in older copies). */
function brokerCommand() {
  const script = fs.readFileSync(path.join(repoRoot, "scripts/broker"), "utf8");
  return /^\s*[a-z|]*\brun\b[a-z|]*\)/m.test(script) ? "run" : "start";
}

/**
 * Starts the stack.
 * @param {{ stream?: string }} [options]
 */
export async function startStack({ stream = "demo" } = {}) {
  if (!fs.existsSync(chorusBin)) throw new Error(`no chorus binary at ${chorusBin} (cargo build, or set CHORUS_BIN)`);
  fs.rmSync(logDir, { recursive: true, force: true });
  fs.mkdirSync(logDir, { recursive: true });
  /** @type {Child[]} */
  const children = [];
  const stack = {
    children,
    stop: () => stopAll(children),
    /** Prints the end of every child's log (for a failed test). */
    printLogs() {
      for (const c of children) console.error(`\n===== ${c.name} (${c.log}) =====\n${tail(c.log)}`);
    },
  };
  try {
    const [broker, ingest, ingestAdmin, fanoutAdmin, demo, ...edgePorts] = await ports(11);
    const token = randomBytes(16).toString("hex");
    const adminToken = randomBytes(16).toString("hex");
    const origin = `http://127.0.0.1:${demo}`;
    const kafka = ["--kafka", `127.0.0.1:${broker}`, "--partitions", "4", "--kafka-session-timeout-ms", "6000"];

    const brokerChild = start("broker", "bash", [path.join(repoRoot, "scripts/broker"), brokerCommand(), String(broker)]);
    children.push(brokerChild);
    // The first run installs Tansu into .venv/tansu.
    await until(`the broker on port ${broker}`, () => accepts(broker), 180_000, brokerChild);

    /** @type {{ child: Child, ready: string }[]} */
    const roles = [];
    const role = (/** @type {string} */ name, /** @type {string[]} */ args, /** @type {number} */ admin) => {
      const child = start(name, chorusBin, args);
      children.push(child);
      roles.push({ child, ready: `http://127.0.0.1:${admin}/readyz` });
    };
    role("ingest", ["ingest", ...kafka,
      "--listen", `127.0.0.1:${ingest}`, "--admin-listen", `127.0.0.1:${ingestAdmin}`,
      "--auth", "trusted-header", "--allowed-origins", origin], ingestAdmin);
    role("fanout", ["fanout", ...kafka, "--admin-listen", `127.0.0.1:${fanoutAdmin}`, "--internal-token", token], fanoutAdmin);
    const edges = [];
    for (const [i, id] of ["edge-a", "edge-b"].entries()) {
      const [listen, internal, admin] = edgePorts.slice(3 * i, 3 * i + 3);
      role(id, ["edge", ...kafka,
        "--listen", `127.0.0.1:${listen}`, "--internal-listen", `127.0.0.1:${internal}`,
        "--admin-listen", `127.0.0.1:${admin}`, "--internal-token", token, "--admin-token", adminToken,
        "--allowed-origins", origin, "--drain-ms", "1000", "--edge-id", id], admin);
      edges.push({ id, url: `http://127.0.0.1:${listen}`, admin: `http://127.0.0.1:${admin}` });
    }
    await Promise.all(roles.map(({ child, ready }) => until(`${child.name} ${ready}`, () => answers200(ready), 60_000, child)));

    const demoUrl = `http://127.0.0.1:${demo}`;
    const demoChild = start("demo", chorusBin, ["demo",
      "--listen", `127.0.0.1:${demo}`, "--ingest-url", `http://127.0.0.1:${ingest}`,
      "--edge-url", edges.map((e) => e.url).join(","), "--stream", stream]);
    children.push(demoChild);
    await until(`the demo page at ${demoUrl}/`, () => answers200(`${demoUrl}/`), 30_000, demoChild);

    return Object.assign(stack, {
      ingest: `http://127.0.0.1:${ingest}`,
      edges,
      demo: demoUrl,
      adminToken,
      /**
       * Posts a comment from node as `user` (the dev stack trusts x-user-id); resolves to the 202 body.
       * @param {string} streamId @param {string} user @param {string} text
       */
      comment(streamId, user, text) {
        const poster = createPoster({ ingest: `http://127.0.0.1:${ingest}`, headers: () => ({ "x-user-id": user }) });
        return poster.comment(streamId, text);
      },
      /** @param {string} streamId @param {string} user */
      like(streamId, user) {
        return createPoster({ ingest: `http://127.0.0.1:${ingest}`, headers: () => ({ "x-user-id": user }) }).like(streamId);
      },
      /** Drains an edge: its viewers are told to reconnect elsewhere. @param {{ admin: string }} edge */
      async drain(edge) {
        const response = await fetch(`${edge.admin}/drain`, {
          method: "POST",
          headers: { authorization: `Bearer ${adminToken}` },
          signal: AbortSignal.timeout(5000),
        });
        const body = await response.text();
        if (!response.ok) throw new Error(`POST ${edge.admin}/drain: ${response.status} ${body}`);
      },
    });
  } catch (error) {
    stack.printLogs();
    await stack.stop();
    throw error;
  }
}

/** @param {number} n distinct free ports */
async function ports(n) {
  const found = new Set();
  while (found.size < n) found.add(await freePort());
  return [...found];
}

/**
 * Stops the children, newest first: SIGTERM, then SIGKILL for any still there 5 s later.
 * @param {Child[]} children
 */
async function stopAll(children) {
  const live = [...children].reverse().filter(({ child }) => child.exitCode === null && child.signalCode === null);
  const exited = live.map(({ child }) => new Promise((resolve) => child.once("exit", resolve)));
  for (const { child } of live) kill(child, "SIGTERM");
  const timeout = new Promise((resolve) => setTimeout(resolve, 5000).unref());
  await Promise.race([Promise.all(exited), timeout]);
  for (const { child } of live) kill(child, "SIGKILL");
  await Promise.race([Promise.all(exited), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
}
