// Replies paged by bytes, against a server whose replies take at most 4 KiB
// (ROOMCAST_WS_MAX_REPLY_BYTES=4096, set by tests/clients/js/test_js_client.py):
// missed events after `room_joined` in `missed` frames, `history` with
// `more`, `presence` with `next_page_token`. Each event here is about 750
// bytes as a frame, so 50 of them take some ten pages. What the real server
// cannot be made to do on cue (a rest that is lost, `overloaded`), a
// scripted one does.

import assert from "node:assert/strict";
import { once } from "node:events";
import { test } from "node:test";
import WebSocket, { WebSocketServer } from "ws";

import { Roomcast } from "../roomcast.js";
import {
  client,
  deferred,
  publish,
  record,
  spying,
  token,
  unique,
  until,
  within,
} from "./support.mjs";

/** The server's reply budget in this file. */
const BUDGET = 4096;

/**
 * Publish events numbered `from`, `from + 1`, ... of about 500 bytes each, in order.
 * @param {string} room
 * @param {number} from
 * @param {number} count
 */
function sequence(room, from, count) {
  const payloads = Array.from({ length: count }, (_, n) => ({
    n: from + n,
    text: "x".repeat(480),
  }));
  return publish(room, "seq.item", payloads, "acme");
}

/** @param {number} from @param {number} to */
const numbers = (from, to) => Array.from({ length: to - from + 1 }, (_, n) => from + n);

/**
 * A user, a new room whose first event the user's client saw before it went
 * away, 50 events published since, and the position it saved, to join again from.
 * @param {string} prefix the room's name, before a unique part
 */
async function fiftyMissed(prefix) {
  const [user, room] = [unique("u"), unique(prefix)];
  const first = client(token(user));
  await first.connect();
  await first.join(room);
  await sequence(room, 1, 1);
  const saved = await until(
    () => first.position(room)?.offset === 1 && first.position(room),
    "the first event",
  );
  await first.close();
  await sequence(room, 2, 50);
  return { user, room, saved };
}

/**
 * The frames of one room, and the checks every paged answer passes: each
 * page within the budget, `room_joined` saying `more`, then `missed` frames
 * until one says `more: false`, and no live event of the room before it.
 * @param {any[]} frames what a spying socket kept
 * @param {string} room
 * @returns {any[]} the `missed` frames
 */
function pagesOf(frames, room) {
  const mine = frames.filter((f) => f.room === room);
  const joined = mine.findIndex((f) => f.type === "room_joined");
  assert.ok(joined >= 0, `no room_joined for ${room}`);
  assert.equal(mine[joined].more, true, "room_joined says more missed events follow");
  const pages = mine.filter((f) => f.type === "missed");
  assert.ok(pages.length >= 2, `${pages.length} missed frames`);
  assert.deepEqual(
    pages.map((p) => p.more),
    [...pages.slice(1).map(() => true), false],
  );
  assert.ok(pages.every((p) => p.recovered === true));
  const last = mine.indexOf(pages.at(-1));
  const early = mine.slice(joined, last).filter((f) => f.type === "event");
  assert.deepEqual(early, [], "a live event came before the last missed frame");
  for (const frame of [mine[joined], ...pages]) {
    const bytes = Buffer.byteLength(JSON.stringify(frame));
    assert.ok(bytes <= BUDGET + 256, `a ${frame.type} frame of ${bytes} bytes`);
  }
  return pages;
}

test(
  "a join from a saved position: 50 missed events in pages, once each, in order, then live ones",
  within(30),
  async () => {
    const { user, room, saved } = await fiftyMissed("chat.paged");

    /** @type {any[]} */
    const frames = [];
    /** @type {Promise<unknown> | undefined} */
    let during;
    const rc = client(token(user), { WebSocket: spying(frames) });
    const seen = record(rc);
    // Published once the first missed event is in: after the join's position
    // (51), while the server is still sending pages.
    rc.on("*", (event) => {
      if (event.room === room) during ??= sequence(room, 52, 5);
    });
    await rc.connect();
    const joined = await rc.join(room, { since: saved });
    await during;
    await sequence(room, 57, 5);
    await until(
      () => seen.in(room).length >= 60,
      () => `60 events: ${JSON.stringify(seen.in(room).map((e) => e.offset))}`,
      10,
    );
    await rc.ping(); // anything duplicated would have come by now

    assert.deepEqual(
      seen.in(room).map((e) => e.offset),
      numbers(2, 61),
    );
    assert.deepEqual(
      seen.in(room).map((e) => e.payload.n),
      numbers(2, 61),
    );
    assert.equal(joined.missed, 50);
    assert.equal(joined.recovered, true);
    assert.equal(joined.offset, 51);
    assert.deepEqual(rc.position(room), { offset: 61, epoch: saved.epoch });
    assert.deepEqual(seen.gaps, []);
    assert.deepEqual(seen.errors, []);
    const pages = pagesOf(frames, room);
    const replayed = [
      ...frames.find((f) => f.type === "room_joined" && f.room === room).missed,
      ...pages.flatMap((p) => p.events),
    ];
    assert.deepEqual(
      replayed.map((e) => e.offset),
      numbers(2, 51),
    );
  },
);

test(
  "after the socket dies, a joined room and an own room resume page by page",
  within(40),
  async () => {
    const user = unique("u");
    const room = unique("chat.away");
    const notifications = `user.${user}.notifications`;
    const away = deferred();
    /** @type {any[]} */
    const frames = [];
    const rc = client({
      token: token(user),
      // Reconnects wait for the test: it decides what happens meanwhile.
      getToken: async ({ reason }) => {
        if (reason === "reconnect") await away.promise;
        return token(user);
      },
      WebSocket: spying(frames),
    });
    const seen = record(rc);
    await rc.connect();
    await rc.join(room);
    await until(() => rc.position(notifications), "the own room's position");
    await Promise.all([sequence(room, 1, 1), sequence(notifications, 1, 1)]);
    await until(
      () => seen.in(room).length === 1 && seen.in(notifications).length === 1,
      "the first events",
    );
    /** @type {any} */ (rc.socket).terminate();
    await until(() => rc.state === "connecting", "the client trying to come back");
    await Promise.all([sequence(room, 2, 50), sequence(notifications, 2, 50)]);
    frames.length = 0;
    away.open();
    await until(
      () => seen.in(room).length >= 51 && seen.in(notifications).length >= 51,
      "the missed events",
      20,
    );
    await Promise.all([sequence(room, 52, 3), sequence(notifications, 52, 3)]);
    await until(
      () => seen.in(room).length >= 54 && seen.in(notifications).length >= 54,
      "the live events",
    );
    await rc.ping();

    for (const name of [room, notifications]) {
      assert.deepEqual(
        seen.in(name).map((e) => e.offset),
        numbers(1, 54),
        name,
      );
      assert.deepEqual(
        seen.in(name).map((e) => e.payload.n),
        numbers(1, 54),
        name,
      );
      pagesOf(frames, name);
      assert.ok(
        seen.rooms.some((c) => c.room === name && c.resumed && c.recovered === true),
        JSON.stringify(seen.rooms),
      );
    }
    assert.deepEqual(seen.gaps, []);
    assert.deepEqual(seen.errors, []);
  },
);

test(
  "a connection lost in the middle of the pages: the join starts over from the last event seen",
  within(30),
  async () => {
    const { user, room, saved } = await fiftyMissed("chat.cut");
    /** @type {any[]} */
    const frames = [];
    let cut = false;
    const rc = client(token(user), {
      WebSocket: spying(frames, (frame, socket) => {
        if (frame.type === "missed" && !cut) {
          cut = true;
          socket.terminate(); // the client still reads this frame, then the socket is gone
        }
      }),
    });
    const seen = record(rc);
    await rc.connect();
    const joined = await rc.join(room, { since: saved });
    await rc.ping();

    assert.ok(cut);
    assert.ok(seen.states.some((s) => s.state === "disconnected"));
    assert.deepEqual(
      seen.in(room).map((e) => e.offset),
      numbers(2, 51),
    );
    assert.equal(joined.missed, 50, "counted over both connections");
    assert.equal(joined.recovered, true);
    assert.deepEqual(seen.gaps, []);
    // The second connection asked from where the first one stopped.
    const answers = frames.filter((f) => f.type === "room_joined" && f.room === room);
    assert.equal(answers.length, 2);
    assert.ok(answers[1].missed[0].offset > 2, JSON.stringify(answers[1].missed[0]));
  },
);

test(
  "leaving in the middle of the pages: the rest is ignored, the client goes on",
  within(30),
  async () => {
    const { user, room, saved } = await fiftyMissed("chat.leave");
    const rc = client(token(user));
    const seen = record(rc);
    /** @type {Promise<void> | undefined} */
    let leaving;
    rc.on("*", (event) => {
      if (event.room === room) leaving ??= rc.leave(room);
    });
    await rc.connect();
    await assert.rejects(rc.join(room, { since: saved }), { code: "left" });
    await leaving;
    await rc.ping();
    assert.deepEqual(
      seen.in(room).map((e) => e.offset),
      [2],
    );
    assert.ok(!rc.rooms().includes(room));

    // Joined again from the saved position: all 50 again, in pages.
    const again = await rc.join(room, { since: saved });
    assert.equal(again.missed, 50);
    assert.deepEqual(
      seen.in(room).map((e) => e.offset),
      [2, ...numbers(2, 51)],
    );
    assert.deepEqual(seen.gaps, []);
    assert.deepEqual(seen.errors, []);
  },
);

test("history() in pages: more, then since the last event", within(20), async () => {
  const room = unique("chat.history");
  await sequence(room, 1, 50);
  const rc = client(token(unique("u")));
  await rc.connect();
  /** @type {import("../roomcast.js").RoomEvent[]} */
  const events = [];
  /** @type {boolean[]} */
  const more = [];
  /** @type {import("../roomcast.js").Position | undefined} */
  let since;
  for (;;) {
    const page = await rc.history(room, { since, limit: 1000 });
    assert.equal(page.recovered, true);
    assert.equal(page.offset, 50);
    assert.ok(page.events.length > 0 && page.events.length < 10, `${page.events.length} events`);
    events.push(...page.events);
    more.push(page.more);
    if (!page.more) break;
    const last = page.events[page.events.length - 1];
    since = { offset: last.offset, epoch: last.epoch };
  }
  assert.deepEqual(
    events.map((e) => e.offset),
    numbers(1, 50),
  );
  assert.ok(more.length >= 5, `${more.length} pages`);
  assert.equal(more.at(-1), false);
  // A limit below a page's worth is a page too, with more.
  const two = await rc.history(room, { limit: 2 });
  assert.deepEqual(
    two.events.map((e) => e.offset),
    [1, 2],
  );
  assert.equal(two.more, true);
});

test("presence() asks for every page and returns every member once", within(30), async () => {
  const room = unique("chat.crowd");
  // Long user ids (64 characters, the most) make long members: some 25 to a page.
  const users = Array.from({ length: 40 }, () => unique("u").padEnd(64, "x"));
  const members = users.map((user) => client(token(user)));
  for (const member of members) {
    await member.connect();
    await member.join(room);
  }
  /** @type {any[]} */
  const frames = [];
  const rc = client(token(unique("u")), { WebSocket: spying(frames) });
  await rc.connect();
  const listed = await rc.presence(room);
  assert.deepEqual(
    listed.map((m) => m.user_id),
    users,
    "every member once, oldest first",
  );
  assert.deepEqual(
    listed.map((m) => m.connection_id),
    members.map((m) => m.session?.connection_id),
  );
  const pages = frames.filter((f) => f.type === "presence");
  assert.ok(pages.length >= 2, `${pages.length} pages`);
  assert.ok(pages.slice(0, -1).every((p) => p.next_page_token));
  assert.equal(pages.at(-1).next_page_token, undefined);
});

/**
 * A scripted server on a free port, `answer` replying to each client frame,
 * and a client of it; `close()` closes both.
 * @param {(frame: any, send: (frame: object) => void) => void} answer
 */
async function scripted(answer) {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await once(server, "listening");
  server.on("connection", (socket) => {
    const send = (/** @type {object} */ frame) => socket.send(JSON.stringify(frame));
    socket.on("message", (data) => answer(JSON.parse(String(data)), send));
  });
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  const rc = new Roomcast(`ws://127.0.0.1:${port}/ws`, {
    token: "t",
    WebSocket: /** @type {any} */ (WebSocket),
    heartbeat: false,
    reconnect: { initialDelay: 50, maxDelay: 100 },
  });
  const close = async () => {
    await rc.close();
    await new Promise((resolve) => server.close(resolve));
  };
  return { rc, close };
}

test(
  "a missed frame that says the rest is lost: a gap, then the live events (scripted server)",
  within(10),
  async () => {
    const room = "chat.scripted";
    /** @param {number} offset @param {string} [name] */
    const event = (offset, name = room) => ({
      type: "event",
      room: name,
      event: "seq.item",
      payload: { n: offset },
      offset,
      epoch: "e1",
      id: `event-${offset}`,
      time: "2026-01-01T00:00:00Z",
      sender: { user_id: "backend", service: "backend" },
    });
    const reason = "history no longer reaches back to offset 5";
    const member = { user_id: "bob", tenant_id: "acme", connection_id: "c2" };
    const { rc, close } = await scripted((frame, send) => {
      const id = frame.id;
      if (frame.type === "auth") {
        send({
          type: "connection.confirmed",
          connection_id: "c1",
          user_id: "alice",
          tenant_id: "acme",
          roles: ["user"],
          rooms: [],
          positions: {},
          heartbeat: 25,
          expires_at: Math.floor(Date.now() / 1000) + 3600,
        });
      } else if (frame.type === "join_room") {
        assert.deepEqual(frame.since, { offset: 1, epoch: "e1" });
        const head = { room, offset: 10, epoch: "e1", presence: [] };
        send({ type: "room_joined", ...head, recovered: true, missed: [event(2)], more: true, id });
        // A backend's JoinRoom of the same room, between two pages.
        send({ type: "room_joined", ...head, presence: [member], recovered: true, missed: [] });
        // For a room whose join is not being answered: ignored.
        const stray = [event(7, "chat.other")];
        send({ type: "missed", room: "chat.other", events: stray, more: false, recovered: true });
        // A live event before the last page: held back until it.
        send(event(11));
        const events = [event(3), event(2), event(4)]; // 2 again: dropped
        send({ type: "missed", room, events, more: true, recovered: true });
        send({ type: "missed", room, events: [], more: false, recovered: false, reason });
        send(event(12));
      } else if (frame.type === "ping") {
        send({ type: "pong", id });
      }
    });
    try {
      /** @type {(string | number)[][]} */
      const log = [];
      rc.on("*", (e) => log.push([e.room, e.offset]));
      rc.onGap((gap) => log.push(["gap", gap.offset, gap.reason]));
      const seen = record(rc);
      await rc.connect();
      const joined = await rc.join(room, { since: { offset: 1, epoch: "e1" } });
      await until(() => log.length === 6, () => JSON.stringify(log));
      await rc.ping();
      assert.deepEqual(log, [
        [room, 2],
        [room, 3],
        [room, 4],
        ["gap", 10, reason],
        [room, 11],
        [room, 12],
      ]);
      assert.deepEqual(
        { ...joined, presence: undefined },
        {
          room,
          offset: 10,
          epoch: "e1",
          presence: undefined,
          recovered: false,
          reason,
          missed: 3,
        },
      );
      assert.deepEqual(
        seen.rooms.map((c) => [c.type, c.by, c.recovered]),
        [
          ["joined", "server", true],
          ["joined", "client", false],
        ],
      );
      assert.deepEqual(
        rc.members(room).map((m) => m.user_id),
        ["bob"],
      );
      assert.deepEqual(rc.position(room), { offset: 12, epoch: "e1" });
      assert.deepEqual(seen.errors, []);
    } finally {
      await close();
    }
  },
);

test(
  "a join answered overloaded is asked again after a backoff (scripted server)",
  within(10),
  async () => {
    /** @type {any[]} */
    const joins = [];
    const { rc, close } = await scripted((frame, send) => {
      if (frame.type === "auth") {
        send({ type: "connection.confirmed", connection_id: "c1", user_id: "alice", rooms: [] });
      } else if (frame.type === "join_room") {
        joins.push(frame);
        if (joins.length === 1) {
          send({ type: "error", code: "overloaded", message: "over its memory", id: frame.id });
        } else {
          const joined = { room: frame.room, offset: 0, epoch: "e1", presence: [], missed: [] };
          send({ type: "room_joined", ...joined, recovered: true, more: false, id: frame.id });
        }
      }
    });
    try {
      await rc.connect();
      const joined = await rc.join("chat.busy");
      assert.equal(joined.room, "chat.busy");
      assert.equal(joins.length, 2);
      assert.deepEqual(rc.rooms(), ["chat.busy"]);
    } finally {
      await close();
    }
  },
);
