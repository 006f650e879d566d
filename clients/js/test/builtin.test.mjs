// The client on the platform's own WebSocket (globalThis.WebSocket), the API
// browsers have: Node 22 has it, Node 20 behind --experimental-websocket
// (test_js_client.py passes the flag). No `ws` package here.

import assert from "node:assert/strict";
import { test } from "node:test";

import { client, control, publish, record, token, unique, until, within } from "./support.mjs";

test("the platform's WebSocket is there", () => {
  assert.equal(typeof globalThis.WebSocket, "function");
});

test("connects, joins, sends and receives on the built-in WebSocket", within(15), async () => {
  const user = unique("u");
  const room = unique("chat.builtin");
  const rc = client(token(user), { WebSocket: undefined });
  const seen = record(rc);
  const confirmed = await rc.connect();
  assert.equal(confirmed.user_id, user);
  assert.ok(rc.socket instanceof globalThis.WebSocket);
  await rc.join(room);
  assert.deepEqual(await rc.send("chat.message", { text: "hi" }, room), { [room]: 1 });
  await publish(room, "chat.message", [{ text: "from the backend" }], "acme");
  await until(() => seen.in(room).length === 2, "both events");
  assert.deepEqual(
    seen.in(room).map((e) => e.payload.text),
    ["hi", "from the backend"],
  );
  assert.deepEqual(seen.errors, []);
});

test(
  "on the built-in WebSocket too, a restart (4200) is followed by a resume",
  within(30),
  async () => {
    const room = unique("chat.builtin");
    // Node 20's WebSocket fires no close event when a connection drops during
    // the handshake (as one made while the server shuts down does); the client
    // must notice it from the error alone, long before the connect timeout.
    const rc = client(token(unique("u")), { WebSocket: undefined, connectTimeout: 60_000 });
    const seen = record(rc);
    await rc.connect();
    await rc.join(room);
    await control("restart");
    await until(
      () => rc.state === "connected" && seen.rooms.some((c) => c.resumed),
      "the client back",
      15,
    );
    assert.equal(seen.states.find((s) => s.state === "disconnected")?.code, 4200);
    await publish(room, "chat.message", [{ n: 1 }], "acme");
    await until(() => seen.in(room).length === 1, "an event from the new server");
  },
);
