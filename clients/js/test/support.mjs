// What the Node tests share: the server's addresses from the environment,
// tokens, the control endpoint (tests/clients/js/test_js_client.py), clients
// closed after each test, and waits in multiples of one time unit.

import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { afterEach } from "node:test";
import WebSocket from "ws";

import { Roomcast } from "../roomcast.js";

/** @param {string} name */
function required(name) {
  const value = process.env[name];
  assert.ok(
    value,
    `${name} is not set: run these tests through tests/clients/js/test_js_client.py`,
  );
  return value;
}

export const WS_URL = required("ROOMCAST_WS_URL");
export const SECRET = required("ROOMCAST_JWT_SECRET");
export const CONTROL = required("ROOMCAST_TEST_CONTROL");
/** Seconds; every wait is a multiple of it (ROOMCAST_TEST_UNIT stretches them all). */
export const UNIT = Number(process.env.ROOMCAST_TEST_UNIT ?? "1");

/** @param {object} value */
const base64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");

/**
 * An HS256 token signed with the server's secret (the claims of docs/grpc.md).
 * @param {string} sub
 * @param {{roles?: string[], tenant?: string, ttl?: number}} [options] ttl in seconds
 */
export function token(sub, { roles = ["user"], tenant = "acme", ttl = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub, roles, iat: now, exp: now + ttl, ...(tenant ? { tenant_id: tenant } : {}) };
  const unsigned = `${base64url({ alg: "HS256", typ: "JWT" })}.${base64url(claims)}`;
  const signature = createHmac("sha256", SECRET).update(unsigned).digest("base64url");
  return `${unsigned}.${signature}`;
}

/**
 * Ask the backend side for something: publish, join_room, restart, pause, resume.
 * @param {string} action
 * @param {object} [body]
 * @returns {Promise<any>}
 */
export async function control(action, body = {}) {
  const response = await fetch(`${CONTROL}/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  assert.equal(response.status, 200, `control ${action}: ${answer.error}`);
  return answer;
}

/**
 * Publish payloads to a room over gRPC, in order; their offsets.
 * @param {string} room
 * @param {string} event
 * @param {object[]} payloads
 * @param {string} [tenant] the room's tenant (acme for tenant rooms by default)
 * @returns {Promise<{offset: number, epoch: string, id: string}[]>}
 */
export async function publish(room, event, payloads, tenant = "") {
  const { published } = await control("publish", { room, event, payloads, tenant_id: tenant });
  return published;
}

/** A name no other test uses. @param {string} prefix */
export const unique = (prefix) => `${prefix}${randomUUID().slice(0, 8)}`;

/** @type {Roomcast[]} */
const opened = [];

/**
 * A client of the test server over the `ws` package; closed after the test.
 * @param {string | import("../roomcast.js").RoomcastOptions} auth a token, or the options
 * @param {import("../roomcast.js").RoomcastOptions} [options]
 */
export function client(auth, options = {}) {
  const base = typeof auth === "string" ? { token: auth } : auth;
  const made = new Roomcast(WS_URL, {
    WebSocket: /** @type {any} */ (WebSocket),
    reconnect: { initialDelay: 100, maxDelay: 1000 },
    ...base,
    ...options,
  });
  opened.push(made);
  return made;
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((made) => made.close()));
});

/** @param {number} units */
export const sleep = (units) => new Promise((resolve) => setTimeout(resolve, units * UNIT * 1000));

/**
 * Wait until `found()` returns something truthy; that value.
 * @template T
 * @param {() => T} found
 * @param {string | (() => string)} what said when it does not happen
 * @param {number} [units]
 * @returns {Promise<NonNullable<T>>}
 */
export async function until(found, what, units = 5) {
  const deadline = Date.now() + units * UNIT * 1000;
  for (;;) {
    const value = found();
    if (value) return /** @type {any} */ (value);
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${units * UNIT} s waiting for ${typeof what === "string" ? what : what()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Everything a client reports, in arrival order, for assertions.
 * @param {Roomcast} rc
 */
export function record(rc) {
  const seen = {
    /** @type {import("../roomcast.js").RoomEvent[]} */ events: [],
    /** @type {import("../roomcast.js").Gap[]} */ gaps: [],
    /** @type {import("../roomcast.js").StateChange[]} */ states: [],
    /** @type {import("../roomcast.js").RoomChange[]} */ rooms: [],
    /** @type {import("../roomcast.js").PresenceChange[]} */ presence: [],
    /** @type {import("../roomcast.js").TypingChange[]} */ typing: [],
    /** @type {import("../roomcast.js").CursorChange[]} */ cursors: [],
    /** @type {Error[]} */ errors: [],
    /** @param {string} room */
    in: (room) => seen.events.filter((event) => event.room === room),
  };
  rc.on("*", (event) => seen.events.push(event));
  rc.onGap((gap) => seen.gaps.push(gap));
  rc.onState((change) => seen.states.push(change));
  rc.onRoom((change) => seen.rooms.push(change));
  rc.onPresence((change) => seen.presence.push(change));
  rc.onTyping((change) => seen.typing.push(change));
  rc.onCursor((change) => seen.cursors.push(change));
  rc.onError((error) => seen.errors.push(error));
  return seen;
}

/** Test options: a timeout in units. @param {number} units */
export const within = (units) => ({ timeout: units * UNIT * 1000 });

/**
 * A promise the test settles when it chooses: `open()` resolves it.
 * @returns {{promise: Promise<void>, open: () => void}}
 */
export function deferred() {
  /** @type {() => void} */
  let open = () => {};
  const promise = new Promise((resolve) => {
    open = () => resolve(undefined);
  });
  return { promise, open };
}

/**
 * A WebSocket implementation (the `ws` package's) that keeps every frame the
 * server sends, parsed, in `frames`, and shows each to `onFrame` before the
 * client sees it. `onFrame` may kill the socket (`terminate()`): the client
 * still gets that frame, and none after it, as when the network dies there.
 * @param {any[]} frames
 * @param {(frame: any, socket: WebSocket) => void} [onFrame]
 * @returns {any} pass it as the client's `WebSocket` option
 */
export function spying(frames, onFrame = () => {}) {
  return class Spy extends WebSocket {
    #dead = false;

    /** @param {string} url */
    constructor(url) {
      super(url);
      this.on("message", (data) => {
        const frame = JSON.parse(String(data));
        frames.push(frame);
        onFrame(frame, this);
      });
    }

    terminate() {
      this.#dead = true;
      super.terminate();
    }

    /**
     * Frames already read from a killed socket are not handed on.
     * @param {string | symbol} event
     * @param {...any} args
     */
    emit(event, ...args) {
      if (event === "message" && this.#dead) return false;
      return super.emit(event, ...args);
    }
  };
}
