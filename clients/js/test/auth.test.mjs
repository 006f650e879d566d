// Tokens and close codes: a refused token (4001), an expired one (4002), a
// token that expires during the session (token.expiring, then 4002), and the
// connection limit (4003). The server of this file announces token.expiring
// 2 units before a token's exp and allows two connections per user.

import assert from "node:assert/strict";
import { test } from "node:test";

import { RoomcastError } from "../roomcast.js";
import { client, publish, record, sleep, token, unique, until, UNIT, within } from "./support.mjs";

const NOTICE = 2 * UNIT; // seconds: the server's token_expiry_notice

/** A token the server cannot verify (signed with another secret). */
function forged() {
  const [head, body] = token("mallory").split(".");
  return `${head}.${body}.${Buffer.from("not the signature").toString("base64url")}`;
}

test("a refused token (4001): a new one from getToken, then connected", within(15), async () => {
  const user = unique("u");
  /** @type {string[]} */
  const asked = [];
  const rc = client({
    token: forged(),
    getToken: ({ reason }) => {
      asked.push(reason);
      return token(user);
    },
  });
  const seen = record(rc);
  const confirmed = await rc.connect();
  assert.equal(confirmed.user_id, user);
  assert.deepEqual(asked, ["unauthorized"]);
  const away = seen.states.find((s) => s.state === "disconnected");
  assert.equal(away?.code, 4001);
  assert.ok((away?.delay ?? 0) > 0, "4001: back off before trying the new token");
});

test(
  "a refused token (4001) and no other: the client stops, connect() rejects",
  within(15),
  async () => {
    const plain = client(forged());
    const error = await plain.connect().then(
      () => assert.fail("connected with a forged token"),
      (e) => e,
    );
    assert.ok(error instanceof RoomcastError);
    assert.equal(error.code, "unauthorized");
    assert.equal(error.closeCode, 4001);
    assert.equal(plain.state, "closed");

    let calls = 0;
    const empty = client({
      token: forged(),
      getToken: () => {
        calls += 1;
        return null;
      },
    });
    const seen = record(empty);
    await assert.rejects(empty.connect(), { code: "unauthorized", closeCode: 4001 });
    assert.equal(calls, 1);
    await sleep(0.5);
    assert.deepEqual(
      seen.states.map((s) => s.state),
      ["connecting", "closed"],
      "no retry",
    );
  },
);

test("an expired token (4002): a fresh one, reconnecting at once", within(15), async () => {
  const user = unique("u");
  /** @type {string[]} */
  const asked = [];
  const rc = client({
    token: token(user, { ttl: -30 }),
    getToken: ({ reason }) => {
      asked.push(reason);
      return token(user);
    },
  });
  const seen = record(rc);
  await rc.connect();
  assert.deepEqual(asked, ["expired"]);
  const away = seen.states.find((s) => s.state === "disconnected");
  assert.equal(away?.code, 4002);
  assert.equal(away?.delay, 0);
});

test(
  "token.expiring: the client sends a fresh token and the session goes on",
  within(20),
  async () => {
    const user = unique("u");
    /** @type {string[]} */
    const asked = [];
    // Expires NOTICE + 1 units from now: announced after about one unit.
    const rc = client({
      token: token(user, { ttl: Math.ceil(NOTICE + UNIT) }),
      getToken: ({ reason }) => {
        asked.push(reason);
        return token(user);
      },
    });
    const seen = record(rc);
    const confirmed = await rc.connect();
    await until(() => asked.length, "token.expiring", 10);
    assert.deepEqual(asked, ["expiring"]);
    // Past the first token's exp: still the same connection.
    await sleep(NOTICE + 2);
    assert.equal(rc.state, "connected");
    assert.equal(rc.session?.connection_id, confirmed.connection_id);
    assert.deepEqual(
      seen.states.map((s) => s.state),
      ["connecting", "connected"],
    );
    assert.deepEqual(seen.errors, []);
    assert.ok((await rc.ping()) >= 0);
  },
);

test(
  "a token not refreshed in time: 4002, a new token, back at once, rooms resumed",
  within(25),
  async () => {
    const user = unique("u");
    const room = unique("chat.expiry");
    /** @type {string[]} */
    const asked = [];
    const rc = client({
      token: token(user, { ttl: Math.ceil(NOTICE + UNIT) }),
      // An app that does not refresh ahead of time, only once the server closes.
      getToken: ({ reason }) => {
        asked.push(reason);
        return reason === "expiring" ? null : token(user);
      },
    });
    const seen = record(rc);
    await rc.connect();
    await rc.join(room);
    await publish(room, "chat.message", [{ n: 1 }], "acme");
    await until(() => seen.in(room).length === 1, "the first event");
    await until(() => seen.states.some((s) => s.state === "disconnected"), "the 4002 close", 15);
    await until(
      () => rc.state === "connected" && seen.rooms.some((c) => c.room === room && c.resumed),
      "the client back",
      10,
    );
    const away = seen.states.find((s) => s.state === "disconnected");
    assert.equal(away?.code, 4002);
    assert.equal(away?.delay, 0);
    assert.deepEqual(asked, ["expiring", "expired"]);
    await publish(room, "chat.message", [{ n: 2 }], "acme");
    await until(() => seen.in(room).length === 2, "the second event");
    assert.deepEqual(
      seen.in(room).map((e) => e.offset),
      [1, 2],
    );
    assert.deepEqual(seen.gaps, []);
  },
);

test(
  "the connection limit (4003): back off, connected once a slot is free",
  within(25),
  async () => {
    const user = unique("u");
    const [first, second] = [client(token(user)), client(token(user))];
    await Promise.all([first.connect(), second.connect()]);
    const third = client(token(user), { reconnect: { initialDelay: 200, maxDelay: 400 } });
    const seen = record(third);
    const connecting = third.connect();
    await until(
      () => seen.states.filter((s) => s.state === "disconnected").length >= 2,
      "two refusals",
      10,
    );
    const refusals = seen.states.filter((s) => s.state === "disconnected");
    assert.ok(
      refusals.every((s) => s.code === 4003),
      JSON.stringify(refusals),
    );
    assert.ok(
      refusals.every((s) => (s.delay ?? 0) > 0),
      "4003: back off, never at once",
    );
    await first.close();
    const confirmed = await connecting;
    assert.equal(confirmed.user_id, user);
  },
);
