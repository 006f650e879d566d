// Losing the connection: the socket dies, the server restarts (4200), the
// server freezes. The client must come back by itself, resume every room
// from the last event it saw, and deliver each event once, in order — or
// say that events were lost (a gap) when the server can no longer replay them.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  client,
  control,
  publish,
  record,
  sleep,
  token,
  unique,
  until,
  UNIT,
  within,
} from "./support.mjs";

/**
 * Publish `count` numbered events to a room in batches, one batch at a time.
 * @param {string} room
 * @param {number} from the first number
 * @param {number} count
 * @param {string} [tenant]
 */
async function sequence(room, from, count, tenant = "acme") {
  const payloads = Array.from({ length: count }, (_, n) => ({ n: from + n }));
  return publish(room, "seq.item", payloads, tenant);
}

/**
 * A getToken that holds reconnects back until `open()`: the test decides
 * what happens while the client is away.
 * @param {string} user
 */
function gate(user) {
  /** @type {() => void} */
  let open = () => {};
  const opened = new Promise((resolve) => {
    open = () => resolve(undefined);
  });
  return {
    open,
    /** @param {{reason: string}} context */
    getToken: async ({ reason }) => {
      if (reason === "reconnect") await opened;
      return token(user);
    },
  };
}

/**
 * Kill the client's socket the way a dead network does: no close frame.
 * @param {import("../roomcast.js").Roomcast} rc
 */
function kill(rc) {
  /** @type {any} */ (rc.socket).terminate();
}

test(
  "resumes every room after the socket dies, losing and repeating no event",
  within(40),
  async () => {
    const user = unique("u");
    const room = unique("chat.seq");
    const notifications = `user.${user}.notifications`;
    const away = gate(user);
    const rc = client({ token: token(user), getToken: away.getToken });
    const seen = record(rc);
    await rc.connect();
    await rc.join(room);
    await until(() => rc.position(notifications), "the own room's position");

    // 1-50 while connected.
    await sequence(room, 1, 50);
    await sequence(notifications, 1, 2);
    await until(
      () => seen.in(room).length === 50 && seen.in(notifications).length === 2,
      "the first events",
    );
    kill(rc);
    await until(() => rc.state === "connecting", "the client trying to come back");
    // 51-110 while it is away (the room keeps its last 100 events).
    await sequence(room, 51, 60);
    await sequence(notifications, 3, 2);
    away.open();
    // 111-200 while it comes back and resumes, and after.
    for (let from = 111; from <= 200; from += 10) {
      await sequence(room, from, 10);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await sequence(notifications, 5, 1);
    await until(
      () => seen.in(room).length >= 200 && seen.in(notifications).length >= 5,
      () =>
        `all 205 events: ${JSON.stringify({
          room: seen.in(room).map((e) => e.offset),
          notifications: seen.in(notifications).map((e) => e.offset),
          gaps: seen.gaps,
          rooms: seen.rooms,
          states: seen.states,
          errors: seen.errors.map(String),
        })}`,
      20,
    );
    await rc.ping(); // anything duplicated would have come by now

    // Each event once, in order, none lost.
    const numbers = Array.from({ length: 200 }, (_, n) => n + 1);
    assert.deepEqual(
      seen.in(room).map((e) => e.payload.n),
      numbers,
    );
    assert.deepEqual(
      seen.in(room).map((e) => e.offset),
      numbers,
    );
    assert.deepEqual(
      seen.in(notifications).map((e) => e.payload.n),
      [1, 2, 3, 4, 5],
    );
    assert.deepEqual(seen.gaps, []);
    // It went away (1006: no close frame), came back, and resumed both rooms with since.
    const states = seen.states.map((s) => s.state);
    assert.deepEqual(states, [
      "connecting",
      "connected",
      "disconnected",
      "connecting",
      "connected",
    ]);
    assert.equal(seen.states[2].code, 1006);
    const resumed = seen.rooms.filter((c) => c.resumed);
    assert.ok(
      resumed.some((c) => c.room === room && c.recovered === true),
      JSON.stringify(seen.rooms),
    );
    assert.ok(
      resumed.some((c) => c.room === notifications && c.recovered === true),
      JSON.stringify(seen.rooms),
    );
    assert.deepEqual(seen.errors, []);
  },
);

test("more missed than the room keeps: a gap, then the live events", within(30), async () => {
  const user = unique("u");
  const room = unique("chat.lost");
  const away = gate(user);
  const rc = client({ token: token(user), getToken: away.getToken });
  const seen = record(rc);
  await rc.connect();
  await rc.join(room);
  await sequence(room, 1, 10);
  await until(() => seen.in(room).length === 10, "the first events");
  kill(rc);
  await until(() => rc.state === "connecting", "the client trying to come back");
  // 150 while away: the room keeps 100, so 11-50 are gone for good.
  const missed = await sequence(room, 11, 150);
  away.open();
  await until(() => seen.gaps.length, "the gap", 10);
  await sequence(room, 161, 2);
  await until(() => seen.in(room).length === 12, "the live events after the gap");
  const [lost] = seen.gaps;
  assert.equal(lost.room, room);
  assert.match(lost.reason, /history no longer reaches back/);
  assert.deepEqual([lost.offset, lost.epoch], [160, missed[0].epoch], "delivery goes on after 160");
  // Nothing replayed (a partial replay would hide the hole): 1-10, then 161-162.
  assert.deepEqual(
    seen.in(room).map((e) => e.offset),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 161, 162],
  );
  assert.ok(seen.rooms.some((c) => c.room === room && c.resumed && c.recovered === false));
});

test(
  "the rooms the server joins by itself resume too: once each, in order",
  within(30),
  async () => {
    const user = unique("u");
    const notifications = `user.${user}.notifications`;
    const away = gate(user);
    // One frame a second: after a reconnect the client's join_room for this
    // room leaves a second after connection.confirmed, and events published in
    // between reach it live, before the room's missed ones.
    const rc = client({
      token: token(user),
      getToken: away.getToken,
      rateLimit: { perSecond: 1, burst: 1 },
    });
    const seen = record(rc);
    await rc.connect();
    await sequence(notifications, 1, 1);
    await until(() => seen.in(notifications).length === 1, "the first notification");
    kill(rc);
    await until(() => rc.state === "connecting", "the client trying to come back");
    await sequence(notifications, 2, 1); // missed: replayed on resume
    const back = new Promise((resolve) => {
      const off = rc.onState(({ state }) => state === "connected" && (off(), resolve(undefined)));
    });
    away.open();
    await back;
    await sequence(notifications, 3, 1); // live, while the resume waits its turn
    const resumedYet = seen.rooms.some((c) => c.room === notifications && c.resumed);
    await until(() => seen.in(notifications).length >= 3, "3 notifications", 10);
    await rc.ping();
    assert.ok(!resumedYet, "the live event came before the resume's answer");
    assert.deepEqual(
      seen.in(notifications).map((e) => e.payload.n),
      [1, 2, 3],
    );
    assert.deepEqual(
      seen.in(notifications).map((e) => e.offset),
      [1, 2, 3],
    );
    assert.deepEqual(seen.gaps, []);
  },
);

test(
  "a server restart (4200): back at once, the lost history reported as a gap",
  within(40),
  async () => {
    const room = unique("chat.restart");
    const rc = client(token(unique("u")));
    const seen = record(rc);
    await rc.connect();
    await rc.join(room);
    const before = await sequence(room, 1, 3);
    await until(() => seen.in(room).length === 3, "3 events");

    await control("restart"); // SIGTERM: every connection gets 4200; then a new server
    await until(
      () => rc.state === "connected" && seen.rooms.some((c) => c.room === room && c.resumed),
      "the client back in its room",
      20,
    );

    const away = seen.states.find((s) => s.state === "disconnected");
    assert.equal(away?.code, 4200);
    assert.equal(away?.delay, 0, "4200: reconnect at once");
    // The memory broker's history went with the old server: a gap, not silence.
    const gaps = seen.gaps.filter((g) => g.room === room);
    assert.equal(gaps.length, 1, JSON.stringify(seen.gaps));
    assert.notEqual(gaps[0].epoch, before[0].epoch);
    assert.ok(gaps[0].reason.length > 0);
    assert.ok(seen.rooms.some((c) => c.room === room && c.resumed && c.recovered === false));

    // The new server's events come through (offset 1 of a new epoch is not a duplicate).
    const after = await sequence(room, 4, 2);
    await until(() => seen.in(room).length === 5, "the new server's events");
    assert.deepEqual(
      seen.in(room).map((e) => [e.payload.n, e.offset]),
      [
        [1, 1],
        [2, 2],
        [3, 3],
        [4, 1],
        [5, 2],
      ],
    );
    assert.equal(seen.in(room)[3].epoch, after[0].epoch);
    assert.deepEqual(await rc.send("chat.message", { n: 6 }, room), { [room]: 3 });
  },
);

test("a request with no answer times out; the connection goes on", within(20), async () => {
  const room = unique("chat.timeout");
  const rc = client(token(unique("u")), { requestTimeout: 1000 * UNIT, heartbeat: false });
  await rc.connect();
  await rc.join(room);
  await control("pause");
  try {
    await assert.rejects(rc.history(room), { code: "timeout" });
  } finally {
    await control("resume");
  }
  // The late answer is dropped; the next request is answered.
  assert.equal((await rc.history(room)).room, room);
  assert.equal(rc.state, "connected");
});

test(
  "a frozen server is noticed by the heartbeat; the client comes back when it thaws",
  within(30),
  async () => {
    const room = unique("chat.frozen");
    const rc = client(token(unique("u")), {
      heartbeat: 300,
      requestTimeout: 1000 * UNIT,
      connectTimeout: 1000 * UNIT,
    });
    const seen = record(rc);
    await rc.connect();
    await rc.join(room);
    await sequence(room, 1, 1);
    await until(() => seen.in(room).length === 1, "the first event");
    await control("pause");
    try {
      // No pong within the request timeout: the client gives the socket up (1006).
      await until(
        () => seen.states.some((s) => s.state === "disconnected"),
        "the heartbeat to give up",
        10,
      );
    } finally {
      await control("resume");
    }
    assert.equal(seen.states.find((s) => s.state === "disconnected")?.code, 1006);
    await until(
      () => rc.state === "connected" && seen.rooms.some((c) => c.resumed),
      "the client back",
      20,
    );
    await sequence(room, 2, 1);
    await until(() => seen.in(room).length === 2, "the second event");
    assert.deepEqual(
      seen.in(room).map((e) => e.offset),
      [1, 2],
    );
    assert.deepEqual(seen.gaps, []);
  },
);

test("reconnect: false — the client stops when the connection ends", within(20), async () => {
  const rc = client(token(unique("u")), { reconnect: false });
  const seen = record(rc);
  await rc.connect();
  /** @type {any} */ (rc.socket).terminate();
  await until(() => rc.state === "closed", "the client to stop");
  await sleep(0.3);
  assert.deepEqual(
    seen.states.map((s) => s.state),
    ["connecting", "connected", "closed"],
  );
  assert.equal(seen.states.at(-1)?.code, 1006);
  await assert.rejects(rc.ping(), { code: "disconnected" });
});
