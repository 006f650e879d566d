// The room protocol through the client, against a real server: connect,
// rooms, events both ways, refusals, presence, typing and cursor, history.

import assert from "node:assert/strict";
import { test } from "node:test";

import { closeAction, RoomcastError } from "../roomcast.js";
import {
  client,
  control,
  publish,
  record,
  sleep,
  token,
  unique,
  until,
  within,
} from "./support.mjs";

test("connects with the token in the first frame and is confirmed", within(10), async () => {
  const user = unique("u");
  const rc = client(token(user));
  assert.equal(rc.state, "idle");
  const confirmed = await rc.connect();
  assert.equal(rc.state, "connected");
  assert.equal(confirmed.user_id, user);
  assert.equal(confirmed.tenant_id, "acme");
  assert.deepEqual(confirmed.roles, ["user"]);
  assert.deepEqual(confirmed.rooms, [
    `user.${user}.private`,
    `user.${user}.notifications`,
    "tenant.acme.users",
    "tenant.acme.notifications",
  ]);
  assert.ok(confirmed.connection_id);
  assert.equal(rc.session?.connection_id, confirmed.connection_id);
  // The token travelled in the auth frame, not in the URL.
  assert.ok(!String(/** @type {any} */ (rc.socket).url).includes("token"));
  // The client's own rooms are followed like joined ones.
  await until(() => rc.position("tenant.acme.users"), "the own rooms' positions");
  assert.deepEqual(rc.rooms().sort(), [...confirmed.rooms].sort());
  assert.equal(await rc.connect(), confirmed, "connect() again: the same session");
});

test("joins, sends, receives and leaves", within(10), async () => {
  const room = unique("chat.");
  const [alice, bob] = [client(token(unique("alice"))), client(token(unique("bob")))];
  const [a, b] = [record(alice), record(bob)];
  await Promise.all([alice.connect(), bob.connect()]);
  const joined = await alice.join(room);
  assert.equal(joined.room, room);
  assert.equal(joined.offset, 0);
  assert.equal(joined.recovered, true);
  assert.ok(joined.epoch);
  await bob.join(room);

  const offsets = await alice.send("chat.message", { text: "hello", n: 1 }, room);
  assert.deepEqual(offsets, { [room]: 1 });
  // The sender gets its own event too, before send() resolves.
  assert.equal(a.in(room).length, 1);
  const [received] = await until(() => b.in(room).length && b.in(room), "bob's event");
  assert.equal(received.event, "chat.message");
  assert.deepEqual(received.payload, { text: "hello", n: 1 });
  assert.equal(received.offset, 1);
  assert.equal(received.epoch, joined.epoch);
  assert.equal(received.sender.user_id, alice.session?.user_id);
  assert.equal(received.sender.connection_id, alice.session?.connection_id);

  await bob.leave(room);
  assert.ok(!bob.rooms().includes(room));
  assert.deepEqual(await alice.send("chat.message", { n: 2 }, [room]), { [room]: 2 });
  await alice.ping(); // one round trip: bob would have had it by now
  await bob.ping();
  assert.deepEqual(
    b.in(room).map((e) => e.offset),
    [1],
  );
  assert.deepEqual(
    a.in(room).map((e) => e.offset),
    [1, 2],
  );
  assert.ok(b.rooms.some((c) => c.type === "left" && c.room === room && c.by === "client"));
  assert.deepEqual([...a.errors, ...b.errors], []);
});

test("dispatches by event name, and every event to '*'", within(10), async () => {
  const room = unique("global.dispatch");
  const rc = client(token(unique("u")));
  /** @type {string[]} */
  const names = [];
  /** @type {number[]} */
  const all = [];
  rc.on("order.created", (event) => names.push(`created ${event.payload.n}`));
  const off = rc.on("order.paid", (event) => names.push(`paid ${event.payload.n}`));
  rc.on("*", (event) => all.push(Number(event.payload.n)));
  await rc.connect();
  await rc.join(room);
  await publish(room, "order.created", [{ n: 1 }]);
  await publish(room, "order.paid", [{ n: 2 }]);
  await publish(room, "order.shipped", [{ n: 3 }]);
  await until(() => all.length === 3, "three events");
  assert.deepEqual(names, ["created 1", "paid 2"]);
  off();
  await publish(room, "order.paid", [{ n: 4 }]);
  await until(() => all.length === 4, "the fourth event");
  assert.deepEqual(names, ["created 1", "paid 2"], "a removed handler is not called");
  assert.deepEqual(all, [1, 2, 3, 4]);
});

test("receives what a backend publishes over gRPC, in its own rooms too", within(10), async () => {
  const user = unique("u");
  const rc = client(token(user));
  const seen = record(rc);
  await rc.connect();
  const room = unique("chat.grpc");
  await rc.join(room);
  const payloads = Array.from({ length: 20 }, (_, n) => ({ n, text: `event ${n}` }));
  const published = await publish(room, "feed.item", payloads, "acme");
  // No join: the server put the connection in its user's rooms.
  const [notice] = await publish(
    `user.${user}.notifications`,
    "user.notification",
    [{ title: "hi" }],
    "acme",
  );
  await until(() => seen.in(room).length === 20, "20 events");
  assert.deepEqual(
    seen.in(room).map((e) => [e.offset, e.payload.n, e.id]),
    published.map((p, n) => [Number(p.offset), n, p.id]),
  );
  assert.equal(seen.in(room)[0].sender.service, "backend");
  const [got] = await until(
    () => seen.in(`user.${user}.notifications`).length && seen.in(`user.${user}.notifications`),
    "the notification",
  );
  assert.equal(got.id, notice.id);
  assert.deepEqual(got.payload, { title: "hi" });
});

test("refusals reject with the server's code; the connection stays", within(10), async () => {
  const rc = client(token(unique("u")));
  const seen = record(rc);
  await rc.connect();
  /** @param {Promise<unknown>} promise @param {string} code */
  const refused = async (promise, code) => {
    const error = await promise.then(
      () => assert.fail(`expected ${code}`),
      (e) => e,
    );
    assert.ok(error instanceof RoomcastError, String(error));
    assert.equal(error.code, code, error.message);
    return error;
  };
  const forbidden = await refused(rc.join("tenant.globex.users"), "forbidden");
  assert.match(forbidden.message, /another tenant/);
  assert.equal(forbidden.frame?.code, "forbidden");
  await refused(rc.join("chat..lobby"), "invalid_room");
  await refused(rc.join("foo.bar"), "invalid_room");
  await refused(rc.send("chat.message", {}, unique("chat.")), "not_member");
  await refused(rc.history("platform.admins"), "forbidden");
  const room = unique("chat.");
  await rc.join(room);
  // A frame over the server's 64 KiB would close the connection (1009): refused here.
  const local = await refused(
    rc.send("chat.message", { blob: "é".repeat(33 * 1024) }, room),
    "too_large",
  );
  assert.equal(local.frame, undefined);
  // Under 64 KiB as JSON, over 64 KiB as the server encodes it: the server refuses.
  const numbers = Object.fromEntries(Array.from({ length: 5000 }, (_, n) => [`k${n}`, n + 0.5]));
  await refused(rc.send("chat.message", numbers, room), "too_large");
  await refused(rc.join("tenant.acme.admins"), "forbidden");
  // Refused joins are not remembered.
  assert.ok(!rc.rooms().includes("tenant.globex.users"));
  assert.ok(!rc.rooms().includes("chat..lobby"));
  assert.equal(rc.state, "connected");
  assert.ok(rc.rooms().includes(room));
  assert.ok((await rc.ping()) >= 0);
  // typing in a room not joined: no reply to reject, the error goes to onError.
  rc.typing(unique("chat."), true);
  const [error] = await until(() => seen.errors.length && seen.errors, "an unanswered refusal");
  assert.ok(error instanceof RoomcastError);
  assert.equal(error.code, "not_member");
  assert.deepEqual(
    seen.states.map((s) => s.state),
    ["connecting", "connected"],
  );
});

test(
  "presence: members on join, joins and leaves announced, presence() asked",
  within(10),
  async () => {
    const room = unique("chat.presence");
    const [alice, bob] = [client(token(unique("alice"))), client(token(unique("bob")))];
    const a = record(alice);
    await Promise.all([alice.connect(), bob.connect()]);
    const first = await alice.join(room);
    assert.deepEqual(
      first.presence.map((m) => m.user_id),
      [alice.session?.user_id],
    );
    const second = await bob.join(room);
    assert.deepEqual(
      second.presence.map((m) => m.user_id).sort(),
      [alice.session?.user_id, bob.session?.user_id].sort(),
    );
    const [joinedAnnounce] = await until(() => a.presence.length && a.presence, "presence.join");
    assert.equal(joinedAnnounce.type, "join");
    assert.equal(joinedAnnounce.room, room);
    assert.equal(joinedAnnounce.user.user_id, bob.session?.user_id);
    assert.equal(joinedAnnounce.user.connection_id, bob.session?.connection_id);
    assert.deepEqual(
      alice
        .members(room)
        .map((m) => m.user_id)
        .sort(),
      [alice.session?.user_id, bob.session?.user_id].sort(),
    );

    const members = await alice.presence(room);
    assert.deepEqual(
      members.map((m) => m.connection_id).sort(),
      [alice.session?.connection_id, bob.session?.connection_id].sort(),
    );
    // Tracked in every room, announced in none of the own rooms.
    const everyone = await alice.presence("tenant.acme.users");
    assert.ok(everyone.some((m) => m.connection_id === bob.session?.connection_id));

    await bob.leave(room);
    await until(() => a.presence.length === 2, "presence.leave");
    assert.equal(a.presence[1].type, "leave");
    assert.equal(a.presence[1].user.user_id, bob.session?.user_id);
    assert.deepEqual(
      alice.members(room).map((m) => m.user_id),
      [alice.session?.user_id],
    );
  },
);

test(
  "typing and cursor reach the other members: typing on changes, cursor throttled",
  within(10),
  async () => {
    const room = unique("document.d");
    const collaboration = `${room}.collaboration`;
    const [alice, bob] = [
      client(token(unique("alice")), { cursorInterval: 100 }),
      client(token(unique("bob"))),
    ];
    const [a, b] = [record(alice), record(bob)];
    await Promise.all([alice.connect(), bob.connect()]);
    await alice.join(collaboration);
    await bob.join(collaboration);

    assert.equal(alice.typing(collaboration, true), true);
    alice.typing(collaboration, true); // no change: not sent
    alice.typing(collaboration, true);
    await until(() => b.typing.length === 1, "bob sees alice typing");
    assert.equal(alice.typing(collaboration, false), true);
    await until(() => b.typing.length === 2, "bob sees alice stop");
    assert.deepEqual(
      b.typing.map((t) => t.state),
      [true, false],
    );
    assert.equal(b.typing[0].user.user_id, alice.session?.user_id);
    assert.equal(b.typing[0].room, collaboration);

    // 30 moves, 10 ms apart: at most one frame per 100 ms leaves, and the last one wins.
    const started = Date.now();
    for (let n = 1; n <= 30; n += 1) {
      assert.equal(alice.cursor(collaboration, { line: n, column: 2 * n }), true);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const most = Math.ceil((Date.now() - started) / 100) + 1;
    await until(() => b.cursors.at(-1)?.position.line === 30, "the last cursor position");
    await sleep(0.3);
    assert.ok(
      b.cursors.length <= most,
      `${b.cursors.length} cursor frames for 30 moves (${most} at most)`,
    );
    assert.ok(b.cursors.length >= 2, `${b.cursors.length} cursor frames`);
    const lines = b.cursors.map((c) => Number(c.position.line));
    assert.deepEqual(
      lines,
      [...lines].sort((x, y) => x - y),
      "in order",
    );
    assert.equal(b.cursors[0].user.connection_id, alice.session?.connection_id);

    // Nobody is told of their own typing or cursor.
    await bob.ping();
    await alice.ping();
    assert.deepEqual([a.typing, a.cursors], [[], []]);
    assert.deepEqual([...a.errors, ...b.errors], []);
  },
);

test("history and resuming from a position", within(10), async () => {
  const room = unique("chat.history");
  const rc = client(token(unique("u")));
  await rc.connect();
  await rc.join(room);
  for (const n of [1, 2, 3]) await rc.send("chat.message", { n }, room);
  const all = await rc.history(room);
  assert.deepEqual(
    all.events.map((e) => [e.offset, e.payload.n]),
    [
      [1, 1],
      [2, 2],
      [3, 3],
    ],
  );
  assert.equal(all.offset, 3);
  assert.equal(all.recovered, true);
  const after = await rc.history(room, { since: { offset: 1, epoch: all.epoch }, limit: 1 });
  assert.deepEqual(
    after.events.map((e) => e.offset),
    [2],
  );
  assert.deepEqual(rc.position(room), { offset: 3, epoch: all.epoch });

  // Another client (a page reloaded) joins from a saved position: it gets the missed ones.
  const later = client(token(unique("u")));
  const seen = record(later);
  await later.connect();
  const joined = await later.join(room, { since: { offset: 1, epoch: all.epoch } });
  assert.equal(joined.recovered, true);
  assert.equal(joined.missed, 2);
  assert.deepEqual(
    seen.in(room).map((e) => e.offset),
    [2, 3],
    "missed events go to the handlers",
  );
  const stale = client(token(unique("u")));
  const staleSeen = record(stale);
  await stale.connect();
  const reset = await stale.join(room, { since: { offset: 1, epoch: "not-the-epoch" } });
  assert.equal(reset.recovered, false);
  assert.match(reset.reason, /epoch/);
  assert.deepEqual(
    staleSeen.gaps.map((g) => [g.room, g.offset, g.epoch]),
    [[room, 3, all.epoch]],
  );
  assert.deepEqual(staleSeen.events, []);
});

test("a backend's JoinRoom puts the connection in a room", within(10), async () => {
  const user = unique("u");
  const room = unique("chat.placed");
  const rc = client(token(user));
  const seen = record(rc);
  await rc.connect();
  const { connections } = await control("join_room", { room, user_id: user, tenant_id: "acme" });
  assert.equal(connections, 1);
  const [change] = await until(
    () =>
      seen.rooms.filter((c) => c.room === room).length && seen.rooms.filter((c) => c.room === room),
    "room_joined",
  );
  assert.equal(change.type, "joined");
  assert.equal(change.by, "server");
  assert.ok(rc.rooms().includes(room));
  await publish(room, "chat.message", [{ n: 1 }], "acme");
  await until(() => seen.in(room).length === 1, "the room's event");
});

test("many joins at once stay under the server's rate limit", within(20), async () => {
  const rc = client(token(unique("u")));
  const seen = record(rc);
  await rc.connect();
  // The server allows bursts of 50 frames; the client paces its frames.
  const rooms = Array.from({ length: 60 }, (_, n) => unique(`chat.many${n}x`));
  const joined = await Promise.all(rooms.map((room) => rc.join(room)));
  assert.deepEqual(
    joined.map((j) => j.room),
    rooms,
  );
  assert.deepEqual(seen.errors, []);
  await Promise.all(rooms.map((room) => rc.leave(room)));
  assert.ok(rooms.every((room) => !rc.rooms().includes(room)));
});

test("while disconnected: sends are refused, joins are remembered", within(10), async () => {
  const room = unique("chat.later");
  const rc = client(token(unique("u")));
  const joining = rc.join(room);
  await assert.rejects(rc.send("chat.message", {}, room), { code: "disconnected" });
  await assert.rejects(rc.presence(room), { code: "disconnected" });
  assert.equal(rc.typing(room, true), false);
  assert.equal(rc.cursor(room, { x: 1 }), false);
  assert.deepEqual(rc.rooms(), [room]);
  await rc.connect();
  const joined = await joining;
  assert.equal(joined.room, room);
  assert.deepEqual(await rc.send("chat.message", {}, room), { [room]: 1 });
});

test("close() stops: promises rejected, no reconnect", within(10), async () => {
  const rc = client(token(unique("u")));
  const seen = record(rc);
  await rc.connect();
  const room = unique("chat.");
  await rc.join(room);
  const waiting = rc.join(unique("chat."));
  const closing = rc.close();
  await assert.rejects(waiting, { code: "closed" });
  await closing;
  assert.equal(rc.state, "closed");
  assert.equal(rc.socket, null);
  assert.deepEqual(rc.rooms(), []);
  await assert.rejects(rc.send("chat.message", {}, room), { code: "disconnected" });
  await sleep(0.5);
  assert.deepEqual(
    seen.states.map((s) => s.state),
    ["connecting", "connected", "closed"],
  );
  assert.equal(seen.states.at(-1)?.code, 1000);
});

test("close codes map to what docs/protocol.md says the client should do", () => {
  /** @type {[number, string][]} */
  const table = [
    [1000, "backoff"], // from the server: "reconnect with backoff if it still wants the rooms"
    [1001, "backoff"],
    [1006, "backoff"],
    [1009, "backoff"],
    [1011, "backoff"],
    [4001, "token"], // get a new token before reconnecting
    [4002, "refresh"], // get a new token, reconnect at once
    [4003, "backoff"], // back off as for 4100
    [4050, "token"], // 4000-4099: the credentials or the account are the problem
    [4100, "backoff"],
    [4101, "backoff"],
    [4150, "backoff"],
    [4200, "now"],
    [4299, "now"],
  ];
  assert.deepEqual(
    table.map(([code]) => [code, closeAction(code)]),
    table,
  );
});
