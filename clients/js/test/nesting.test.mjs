// How deep a payload may nest (docs/protocol.md, "Limits"): 32 levels, the
// payload object being level 1 and each object or list inside adding one.
// What a backend publishes at the limit reaches the client intact; what the
// client sends beyond it is refused with `bad_request`, and nothing else.

import assert from "node:assert/strict";
import { test } from "node:test";

import { RoomcastError } from "../roomcast.js";
import { client, publish, record, token, unique, until, within } from "./support.mjs";

/**
 * A payload of `levels` levels of objects, a number at the bottom.
 * @param {number} levels
 * @returns {Record<string, unknown>}
 */
function nestedObjects(levels) {
  /** @type {Record<string, unknown>} */
  let value = { n: 1 };
  for (let level = 1; level < levels; level += 1) value = { a: value };
  return value;
}

/**
 * A payload object holding lists down to level `levels`, `[1]` the deepest.
 * @param {number} levels
 * @returns {Record<string, unknown>}
 */
function nestedLists(levels) {
  /** @type {unknown[]} */
  let value = [1];
  for (let level = 2; level < levels; level += 1) value = [value];
  return { a: value };
}

/**
 * The nesting of a JSON value: an object or a list is one level more than its items.
 * @param {unknown} value
 */
function depth(value) {
  if (value === null || typeof value !== "object") return 0;
  const items = Array.isArray(value) ? value : Object.values(value);
  return 1 + Math.max(0, ...items.map(depth));
}

test("payloads nested 32 levels deep reach the client intact", within(15), async () => {
  const room = unique("chat.deep");
  const rc = client(token(unique("u")));
  const seen = record(rc);
  await rc.connect();
  await rc.join(room);
  const payloads = [nestedObjects(32), nestedLists(32)];
  assert.deepEqual(payloads.map(depth), [32, 32]);

  await publish(room, "deep.item", payloads, "acme"); // by a backend, over gRPC
  await until(() => seen.in(room).length === 2, "the backend's events");
  // The client's own send of the same payloads: accepted, and back intact.
  for (const payload of payloads) await rc.send("deep.item", payload, room);
  await until(() => seen.in(room).length === 4, "the client's own events");

  assert.deepEqual(
    seen.in(room).map((e) => e.payload),
    [...payloads, ...payloads],
  );
  assert.deepEqual(
    seen.in(room).map((e) => e.offset),
    [1, 2, 3, 4],
  );
  assert.deepEqual(seen.errors, []);
});

test(
  "a payload nested 33 levels is refused with bad_request; the client goes on",
  within(15),
  async () => {
    const room = unique("chat.deeper");
    const rc = client(token(unique("u")));
    const seen = record(rc);
    await rc.connect();
    await rc.join(room);

    for (const payload of [nestedObjects(33), nestedLists(33)]) {
      assert.equal(depth(payload), 33);
      await assert.rejects(rc.send("deep.item", payload, room), (error) => {
        assert.ok(error instanceof RoomcastError, String(error));
        assert.equal(error.code, "bad_request");
        assert.match(error.message, /nested deeper than 32 levels/);
        return true;
      });
    }
    // A cursor position travels inside the payload: at most 31 levels.
    assert.equal(rc.cursor(room, nestedObjects(32)), true);
    const [refused] = await until(() => seen.errors.length && seen.errors, "the cursor's refusal");
    assert.equal(/** @type {RoomcastError} */ (refused).code, "bad_request");
    assert.match(refused.message, /nested deeper than 32 levels/);

    // Nothing was published; the connection is still there and in the room.
    assert.equal(rc.state, "connected");
    assert.ok((await rc.ping()) >= 0);
    await publish(room, "deep.item", [{ n: 1 }], "acme");
    await until(() => seen.in(room).length === 1, "the backend's event");
    assert.deepEqual(
      seen.in(room).map((e) => [e.offset, e.payload]),
      [[1, { n: 1 }]],
    );
    assert.deepEqual(await rc.send("deep.item", nestedObjects(32), room), { [room]: 2 });
    assert.equal(seen.states.filter((s) => s.state === "disconnected").length, 0);
  },
);
