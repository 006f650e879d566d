// roomcast.js — the browser (and Node) client of roomcast's WebSocket bridge.
//
// One dependency-free ES module. The contract it implements is
// docs/protocol.md, section "WebSocket bridge": JSON text frames, one object
// each, over `ws://host:8080/ws`. What this file adds on top of the frames:
//
// - the token goes in the first frame (`auth`), never in the URL; a fresh one
//   is asked of `getToken()` on reconnect and on `token.expiring`;
// - the connection comes back by itself, after a jittered exponential
//   backoff chosen from the close code (the table under "Close codes");
// - every room is joined again after a reconnect with `since` set to the
//   last event seen, so no event is lost; where the server cannot replay
//   (`recovered: false`) the app is told with a *gap* instead. Replies are
//   paged by bytes: missed events that do not fit in `room_joined` follow in
//   `missed` frames, and the room's live events wait until the last of them;
// - replies are matched to requests by `id`, every request has a timeout,
//   and no queue grows without bound.
//
// Types are JSDoc (checked with `tsc --checkJs` in CI); README.md beside this
// file shows it in use.

/** The client's version. */
export const VERSION = "0.1.0";

// WebSocket.readyState of an open socket (the same in browsers, undici and `ws`).
const OPEN = 1;

/** Codes of the errors the client makes itself (the server's are in docs/protocol.md). */
export const CLIENT_ERRORS = Object.freeze({
  /** No reply within `requestTimeout`. */
  timeout: "timeout",
  /** Not connected, or the connection dropped before the reply came. */
  disconnected: "disconnected",
  /** `close()` was called, or the client stopped for good. */
  closed: "closed",
  /** More frames than the client-side rate limit lets through and queues. */
  rateLimited: "rate_limited",
  /** A frame over `maxFrameBytes`: refused before the server would close the connection. */
  tooLarge: "too_large",
  /** The server sent something that is not a JSON object (reported to `onError`). */
  badFrame: "bad_frame",
  /** `leave()` was called, or a backend's LeaveRoom came, while the room's `join()` was waiting. */
  left: "left",
});

/**
 * An `error` frame from the server (`code` is one of docs/protocol.md's:
 * `forbidden`, `not_member`, ...), or a failure of the client itself (`code`
 * is one of {@link CLIENT_ERRORS}).
 */
export class RoomcastError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{frame?: Record<string, unknown>, closeCode?: number}} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = "RoomcastError";
    /** @type {string} */
    this.code = code;
    /**
     * The server's `error` frame, when there was one.
     * @type {Record<string, unknown> | undefined}
     */
    this.frame = details.frame;
    /** The WebSocket close code, when the connection ended. @type {number | undefined} */
    this.closeCode = details.closeCode;
  }
}

/**
 * @typedef {object} Position Where a room's history stands: the last event's offset, and its epoch.
 * @property {number} offset
 * @property {string} epoch
 *
 * @typedef {object} Sender Who published an event (set by the server, never by the client).
 * @property {string} [user_id]
 * @property {string} [tenant_id]
 * @property {string} [connection_id]
 * @property {string} [service]
 *
 * @typedef {object} RoomEvent An `event` frame.
 * @property {"event"} type
 * @property {string} room
 * @property {string} event
 * @property {Record<string, unknown>} payload
 * @property {number} offset 0 for events kept out of history
 * @property {string} epoch
 * @property {string} id the event's id, assigned by the server
 * @property {string} time RFC 3339, UTC
 * @property {Sender} sender
 *
 * @typedef {object} User A connection as presence, typing and cursor frames name it.
 * @property {string} user_id
 * @property {string} [tenant_id]
 * @property {string} connection_id
 *
 * @typedef {User & {joined_at?: number}} Member A room's member (`joined_at`: Unix seconds).
 *
 * @typedef {object} Confirmed The `connection.confirmed` frame.
 * @property {string} connection_id
 * @property {string} user_id
 * @property {string} tenant_id
 * @property {string[]} roles
 * @property {string[]} rooms the rooms the server put the connection in by itself
 * @property {number} heartbeat seconds
 * @property {number} expires_at the token's `exp`
 *
 * @typedef {object} Joined What `join()` resolves with (from `room_joined`).
 * @property {string} room
 * @property {number} offset the room's newest offset when it was joined
 * @property {string} epoch
 * @property {Member[]} presence the members (in rooms with presence announced; else empty)
 * @property {boolean} recovered false when `since` could not be served, or the rest of the
 *   missed events could not be (a gap was reported)
 * @property {string} reason why not, when not recovered
 * @property {number} missed how many missed events were replayed (already handed to `on`
 *   handlers), over every page of them and every connection the join took
 *
 * @typedef {object} History What `history()` resolves with.
 * @property {string} room
 * @property {RoomEvent[]} events oldest first
 * @property {number} offset the room's newest offset
 * @property {string} epoch
 * @property {boolean} recovered false when `since` could not be served
 * @property {boolean} more stored events follow the last of `events` (the reply is a page):
 *   ask again with `since` set to the last event's offset and epoch
 *
 * @typedef {object} PresenceChange
 * @property {"join" | "leave"} type
 * @property {string} room
 * @property {User} user
 *
 * @typedef {object} TypingChange
 * @property {string} room
 * @property {User} user
 * @property {boolean} state
 *
 * @typedef {object} CursorChange
 * @property {string} room
 * @property {User} user
 * @property {Record<string, unknown>} position
 *
 * @typedef {object} Gap Events of a room were lost for good: reload the room's state.
 * @property {string} room
 * @property {string} reason in the server's words where it gave them
 * @property {number} offset the room's position from which delivery goes on
 * @property {string} epoch
 *
 * @typedef {object} RoomChange The connection entered or left a room.
 * @property {"joined" | "left"} type
 * @property {string} room
 * @property {"client" | "server"} by "server": a backend moved it (gRPC JoinRoom/LeaveRoom),
 *   or the server refused a resume
 * @property {boolean} [resumed] joined again after a reconnect
 * @property {boolean} [recovered]
 * @property {RoomcastError} [error] why a room could not be resumed
 *
 * @typedef {"idle" | "connecting" | "connected" | "disconnected" | "closed"} State
 *
 * @typedef {object} StateChange
 * @property {State} state
 * @property {number} [code] the close code that ended the last connection
 * @property {string} [reason] its reason
 * @property {number} [delay] ms until the next attempt ("disconnected")
 * @property {number} [attempt] attempts since the last confirmed connection
 *
 * @typedef {object} TokenContext Why a token is asked for.
 * @property {"connect" | "reconnect" | "unauthorized" | "expired" | "expiring"} reason
 *   "unauthorized" (close 4001) and "expired" (4002): the old token is refused, return
 *   a new one or nothing to stop; "expiring": the server announced the end of the token.
 *
 * @typedef {string | null | undefined} MaybeToken
 * @typedef {(context: TokenContext) => MaybeToken | Promise<MaybeToken>} TokenSource
 *
 * @typedef {object} WebSocketLike The part of the WHATWG WebSocket the client uses.
 * @property {number} readyState
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {(() => void)} [terminate] `ws` package: drop the socket at once
 * @property {((event: any) => void) | null} onopen
 * @property {((event: any) => void) | null} onmessage
 * @property {((event: any) => void) | null} onclose
 * @property {((event: any) => void) | null} onerror
 *
 * @typedef {new (url: string) => WebSocketLike} WebSocketConstructor
 *
 * @typedef {object} ReconnectOptions
 * @property {number} [initialDelay] ms before the first retry (halved at random): 500
 * @property {number} [maxDelay] the most the delay grows to: 30000
 *
 * @typedef {object} RateOptions A client-side token bucket, under the server's (20/s, burst 50).
 * @property {number} [perSecond] 20
 * @property {number} [burst] 40
 * @property {number} [maxQueued] frames waiting for the bucket before `rate_limited`: 100
 *
 * @typedef {object} RoomcastOptions
 * @property {string} [token] the JWT for the first connection
 * @property {TokenSource} [getToken] a fresh JWT, asked on reconnect and when the server says
 *   the token expires
 * @property {WebSocketConstructor} [WebSocket] the implementation (default: globalThis.WebSocket)
 * @property {number} [requestTimeout] ms to wait for a reply: 10000
 * @property {number} [connectTimeout] ms from opening to `connection.confirmed`: 10000
 * @property {ReconnectOptions | false} [reconnect] false: never reconnect
 * @property {RateOptions | false} [rateLimit] false: no client-side limit
 * @property {number} [cursorInterval] ms between two cursor frames of a room (latest wins): 100
 * @property {boolean | number} [heartbeat] ping when the connection is idle for the server's
 *   heartbeat interval (or this many ms); reconnect when no pong comes in `requestTimeout`: true
 * @property {number} [maxHeld] events of a room kept back while it resumes: 10000
 * @property {number} [maxFrameBytes] larger frames are refused here with `too_large` instead of
 *   the server closing the connection (1009): 65536, the server's `ws_max_frame_bytes`
 */

/**
 * @typedef {object} RoomState (internal) what the client knows of one room.
 * @property {string} name
 * @property {boolean} wanted the app wants to be in it (rejoin after reconnect)
 * @property {boolean} own the server puts the connection in it by itself
 * @property {boolean} inRoom the current connection is in it on the server
 * @property {boolean} joining a join_room is on its way
 * @property {number} offset last offset handed to the app
 * @property {number} top the room's newest offset as last reported by room_joined
 * @property {string} epoch "" for a room that had no events when it was joined
 * @property {boolean} known offset, top and epoch came from the server (a resume can ask `since`)
 * @property {Position | null} since a position given to join(), for the first join
 * @property {Position | null} asked the since of the join_room on its way
 * @property {RoomEvent[] | null} held live events kept back while the room resumes
 * @property {boolean} heldDropped more than maxHeld events arrived while resuming
 * @property {Map<string, Member>} members by connection id
 * @property {{resolve: (joined: Joined) => void, reject: (error: Error) => void}[]} waiters
 * @property {Replay | null} replay the answer to a join being handed over (its missed events)
 * @property {number} replayed missed events handed to the app since the join began (a join
 *   restarted by a new connection goes on counting)
 * @property {number} refusals joins answered `overloaded` in a row
 * @property {ReturnType<typeof setTimeout> | null} retry the join again after `overloaded`
 *
 * @typedef {object} Replay (internal) a `room_joined` whose missed events are being handed
 *   over: all at once, or page by page in `missed` frames until one says `more: false`.
 * @property {Position} top the room's position when it was joined: live events come after it
 * @property {Member[]} presence
 * @property {"client" | "server"} by
 * @property {boolean} resumed
 * @property {boolean} recovered
 * @property {string} reason
 *
 * @typedef {object} Pending (internal) a request waiting for its reply.
 * @property {string} type
 * @property {string} [room]
 * @property {Position | null} [since]
 * @property {(frame: any) => void} resolve
 * @property {(error: Error) => void} reject
 * @property {ReturnType<typeof setTimeout>} timer
 */

/**
 * What to do after the server closed the connection with `code`
 * (docs/protocol.md, "Close codes": 4000–4099 the credentials are the
 * problem, 4100–4199 back off then resume, 4200–4299 reconnect at once).
 *
 * @param {number} code
 * @returns {"token" | "refresh" | "now" | "backoff"} "token": get a new token, then back off;
 *   "refresh": get a new token, then reconnect at once; "now": reconnect at once;
 *   "backoff": reconnect after a backoff.
 */
export function closeAction(code) {
  if (code === 4002) return "refresh"; // token expired
  if (code === 4003) return "backoff"; // connection limit: "back off as for 4100"
  if (code >= 4000 && code <= 4099) return "token"; // 4001 unauthorized, and the rest of the range
  if (code >= 4200 && code <= 4299) return "now"; // server restarting: another node takes us
  // 1000/1001 from the server, 1006, 1009, 1011, 1013 (over its memory budget), 4100-4199, ...
  return "backoff";
}

// Server frames that answer a request and echo its id. `event` frames carry
// an `id` too, the event's own, and are never matched to a request.
const REPLIES = new Set([
  "room_joined",
  "room_left",
  "message_sent",
  "presence",
  "history",
  "token.refreshed",
  "pong",
  "error",
]);

/**
 * A connection to roomcast's WebSocket bridge that comes back by itself.
 *
 * ```js
 * const rc = new Roomcast("wss://rt.example.com/ws", { token, getToken });
 * rc.on("chat.message", (event) => render(event.payload));
 * await rc.connect();
 * await rc.join("chat.lobby");
 * await rc.send("chat.message", { text: "hi" }, "chat.lobby");
 * ```
 */
export class Roomcast {
  /** @type {string} */ #url;
  /** @type {WebSocketConstructor} */ #WebSocket;
  /** @type {string | null} */ #token;
  /** @type {TokenSource | null} */ #getToken;
  /** @type {number} */ #requestTimeout;
  /** @type {number} */ #connectTimeout;
  /** @type {Required<ReconnectOptions> | null} */ #reconnect;
  /** @type {Required<RateOptions> | null} */ #rate;
  /** @type {number} */ #cursorInterval;
  /** @type {boolean | number} */ #heartbeat;
  /** @type {number} */ #maxHeld;
  /** @type {number} */ #maxFrameBytes;

  /** @type {State} */ #state = "idle";
  /** @type {WebSocketLike | null} */ #ws = null;
  // Bumped whenever a socket is given up: callbacks of older sockets, and
  // async steps begun for them, see a stale number and do nothing.
  #generation = 0;
  #attempt = 0;
  #ids = 0;
  /** @type {Confirmed | null} */ #session = null;
  /** @type {Map<number, Pending>} */ #pending = new Map();
  /** @type {Map<string, RoomState>} */ #rooms = new Map();
  /** @type {{resolve: (c: Confirmed) => void, reject: (e: Error) => void}[]} */ #connectWaiters =
    [];
  /** @type {ReturnType<typeof setTimeout> | null} */ #retryTimer = null;
  /** @type {ReturnType<typeof setTimeout> | null} */ #connectTimer = null;
  /** @type {ReturnType<typeof setInterval> | null} */ #heartbeatTimer = null;
  #lastHeard = 0;
  // The client-side token bucket, and frames waiting for it.
  #tokens = 0;
  #refilled = 0;
  /** @type {string[]} */ #queue = [];
  /** @type {ReturnType<typeof setTimeout> | null} */ #drainTimer = null;
  /** @type {Map<string, boolean>} */ #typing = new Map();
  /**
   * Per room: when its last cursor frame left, and the latest position waiting for the next.
   * @type {Map<string, {last: number, pending: Record<string, unknown> | null,
   *   timer: ReturnType<typeof setTimeout> | null}>}
   */
  #cursors = new Map();

  /** @type {Map<string, Set<(event: RoomEvent) => void>>} */ #handlers = new Map();
  /** @type {Set<(change: PresenceChange) => void>} */ #presenceHandlers = new Set();
  /** @type {Set<(change: TypingChange) => void>} */ #typingHandlers = new Set();
  /** @type {Set<(change: CursorChange) => void>} */ #cursorHandlers = new Set();
  /** @type {Set<(gap: Gap) => void>} */ #gapHandlers = new Set();
  /** @type {Set<(change: RoomChange) => void>} */ #roomHandlers = new Set();
  /** @type {Set<(change: StateChange) => void>} */ #stateHandlers = new Set();
  /** @type {Set<(error: Error) => void>} */ #errorHandlers = new Set();

  /**
   * @param {string} url the bridge's endpoint, e.g. `wss://rt.example.com/ws`
   * @param {RoomcastOptions} [options]
   */
  constructor(url, options = {}) {
    const Implementation = options.WebSocket ?? /** @type {any} */ (globalThis).WebSocket;
    if (typeof Implementation !== "function") {
      throw new TypeError(
        "roomcast: no WebSocket implementation; pass one as options.WebSocket " +
          "(in Node 20: the `ws` package, or run node --experimental-websocket)",
      );
    }
    if (!options.token && !options.getToken) {
      throw new TypeError("roomcast: give options.token or options.getToken");
    }
    this.#url = url;
    this.#WebSocket = Implementation;
    this.#token = options.token ?? null;
    this.#getToken = options.getToken ?? null;
    this.#requestTimeout = options.requestTimeout ?? 10_000;
    this.#connectTimeout = options.connectTimeout ?? 10_000;
    this.#reconnect =
      options.reconnect === false
        ? null
        : { initialDelay: 500, maxDelay: 30_000, ...options.reconnect };
    this.#rate =
      options.rateLimit === false
        ? null
        : { perSecond: 20, burst: 40, maxQueued: 100, ...options.rateLimit };
    this.#cursorInterval = options.cursorInterval ?? 100;
    this.#heartbeat = options.heartbeat ?? true;
    this.#maxHeld = options.maxHeld ?? 10_000;
    this.#maxFrameBytes = options.maxFrameBytes ?? 64 * 1024;
  }

  // -- state ------------------------------------------------------------------

  /** "idle", "connecting", "connected", "disconnected" (waiting to retry) or "closed". */
  get state() {
    return this.#state;
  }

  /** The current connection's `connection.confirmed` frame, or null. */
  get session() {
    return this.#state === "connected" ? this.#session : null;
  }

  /** The current WebSocket, or null (for diagnostics and tests; do not send on it). */
  get socket() {
    return this.#ws;
  }

  /** The rooms the client is in, or will join again once connected. */
  rooms() {
    return [...this.#rooms.values()].filter((r) => r.wanted).map((r) => r.name);
  }

  /**
   * The last position seen in a room: what a rejoin asks to resume from.
   * @param {string} room
   * @returns {Position | null}
   */
  position(room) {
    const r = this.#rooms.get(room);
    if (!r || !r.known) return null;
    // {offset: 0, epoch: ""}: the room had no events yet; resuming from there
    // replays everything it got since (docs/protocol.md, "Recovery").
    return { offset: Math.max(r.offset, r.top), epoch: r.epoch };
  }

  /**
   * The members of a room as last announced (`room_joined`, then
   * `presence.join`/`presence.leave`); only rooms with presence announced
   * have them. Ask the server with {@link presence}.
   * @param {string} room
   * @returns {Member[]}
   */
  members(room) {
    return [...(this.#rooms.get(room)?.members.values() ?? [])];
  }

  // -- listening -----------------------------------------------------------------

  /**
   * Handle the events of a name (`"chat.message"`), or every event (`"*"`),
   * of every room the client is in. Missed events replayed after a
   * reconnect come here too, in order, each once.
   * @param {string} event
   * @param {(event: RoomEvent) => void} handler
   * @returns {() => void} removes the handler
   */
  on(event, handler) {
    let handlers = this.#handlers.get(event);
    if (!handlers) this.#handlers.set(event, (handlers = new Set()));
    const set = handlers;
    set.add(handler);
    return () => {
      set.delete(handler);
    };
  }

  /**
   * Another connection joined or left a room with presence announced.
   * @param {(change: PresenceChange) => void} handler
   */
  onPresence(handler) {
    return listen(this.#presenceHandlers, handler);
  }

  /**
   * Another member's typing state changed.
   * @param {(change: TypingChange) => void} handler
   */
  onTyping(handler) {
    return listen(this.#typingHandlers, handler);
  }

  /**
   * Another member's cursor moved.
   * @param {(change: CursorChange) => void} handler
   */
  onCursor(handler) {
    return listen(this.#cursorHandlers, handler);
  }

  /**
   * Events of a room were lost: a resume was answered with `recovered:
   * false`, the room's history was reset (new epoch), or offsets were
   * skipped. Reload the room's state from your source of truth.
   * @param {(gap: Gap) => void} handler
   */
  onGap(handler) {
    return listen(this.#gapHandlers, handler);
  }

  /**
   * The connection entered or left a room: by `join()`/`leave()`, by a
   * resume after a reconnect, or moved by a backend (gRPC JoinRoom/LeaveRoom).
   * @param {(change: RoomChange) => void} handler
   */
  onRoom(handler) {
    return listen(this.#roomHandlers, handler);
  }

  /**
   * The connection's state changed.
   * @param {(change: StateChange) => void} handler
   */
  onState(handler) {
    return listen(this.#stateHandlers, handler);
  }

  /**
   * An `error` frame that answers no request (`typing` or `cursor` refused),
   * a failed token refresh, or a handler that threw. Without a handler these
   * go to `console.warn`.
   * @param {(error: Error) => void} handler
   */
  onError(handler) {
    return listen(this.#errorHandlers, handler);
  }

  // -- connecting ------------------------------------------------------------------

  /**
   * Connect, and stay connected until {@link close}.
   * @returns {Promise<Confirmed>} the first `connection.confirmed`; rejected
   *   when the client stops for good first (close(), or a refused token and
   *   no new one)
   */
  connect() {
    if (this.#state === "connected" && this.#session) return Promise.resolve(this.#session);
    return new Promise((resolve, reject) => {
      this.#connectWaiters.push({ resolve, reject });
      if (this.#state === "idle" || this.#state === "closed") {
        this.#attempt = 0;
        void this.#open(this.#token ? null : "connect");
      }
    });
  }

  /**
   * Close the connection (code 1000) and stop: no reconnect, every waiting
   * promise rejected with `closed`, every room forgotten.
   * @returns {Promise<void>} once the socket is closed
   */
  close() {
    const ws = this.#ws;
    this.#halt(new RoomcastError(CLIENT_ERRORS.closed, "the client was closed"));
    this.#setState({ state: "closed", code: 1000, reason: "closed by the client" });
    if (!ws || ws.readyState > OPEN) return Promise.resolve();
    return new Promise((resolve) => {
      const done = setTimeout(() => {
        ws.terminate?.();
        resolve();
      }, 2_000);
      ws.onclose = () => {
        clearTimeout(done);
        resolve();
      };
      ws.close(1000, "client closed");
    });
  }

  /**
   * Open a socket and authenticate. `tokenReason` null: use the token in hand.
   * @param {TokenContext["reason"] | null} tokenReason
   */
  async #open(tokenReason) {
    const generation = ++this.#generation;
    this.#setState({ state: "connecting", attempt: this.#attempt });
    let token = this.#token;
    if (tokenReason !== null) {
      try {
        token = await this.#freshToken(tokenReason);
      } catch (error) {
        if (generation !== this.#generation) return;
        this.#report(error);
        void this.#retry(0, "getToken failed", "backoff");
        return;
      }
      if (generation !== this.#generation) return;
    }
    if (!token) {
      this.#stop(4001, "no token to connect with");
      return;
    }
    this.#token = token;
    const auth = JSON.stringify({ type: "auth", token });
    let ws;
    try {
      ws = new this.#WebSocket(this.#url);
    } catch (error) {
      // A URL the implementation refuses: retrying cannot help.
      this.#report(error);
      this.#stop(1006, `cannot open a WebSocket to ${this.#url}`);
      return;
    }
    this.#ws = ws;
    const mine = () => generation === this.#generation;
    ws.onopen = () => {
      if (mine()) ws.send(auth); // the preferred way: the token never shows in a URL
    };
    ws.onmessage = (message) => {
      if (mine()) this.#receive(message.data);
    };
    ws.onclose = (event) => {
      if (mine()) this.#closed(event.code, event.reason ?? "");
    };
    ws.onerror = () => {
      // A close event follows an error (WHATWG: "fail the WebSocket
      // connection"), but Node 20's own WebSocket fires none when the
      // connection drops during the handshake: give up the socket if the
      // close event has not come a second later.
      setTimeout(() => {
        if (mine()) this.#drop("the connection failed");
      }, 1_000);
    };
    this.#connectTimer = setTimeout(() => {
      if (mine()) this.#drop(`not confirmed within ${this.#connectTimeout} ms`);
    }, this.#connectTimeout);
  }

  /**
   * A token from getToken; for a plain reconnect, the one in hand when it has none.
   * @param {TokenContext["reason"]} reason
   * @returns {Promise<string | null>}
   */
  async #freshToken(reason) {
    const fresh = this.#getToken ? await this.#getToken({ reason }) : null;
    if (typeof fresh === "string" && fresh) return fresh;
    return reason === "unauthorized" || reason === "expired" ? null : this.#token;
  }

  /**
   * The socket closed (the server closed it, or it broke).
   * @param {number} code
   * @param {string} reason
   */
  #closed(code, reason) {
    this.#generation += 1;
    this.#ws = null;
    this.#disconnected(
      new RoomcastError(CLIENT_ERRORS.disconnected, `connection closed (${code})`, {
        closeCode: code,
      }),
    );
    if (!this.#reconnect) {
      this.#stop(code, reason);
      return;
    }
    void this.#retry(code, reason, closeAction(code));
  }

  /**
   * Give up the current socket at once (no answer in time) and reconnect.
   * It counts as 1006, what browsers report for a connection that broke.
   * @param {string} reason
   */
  #drop(reason) {
    const ws = this.#ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        if (ws.terminate) ws.terminate();
        else ws.close();
      } catch {
        // It is being given up either way.
      }
    }
    this.#closed(1006, reason);
  }

  /**
   * Schedule the next attempt.
   * @param {number} code
   * @param {string} reason
   * @param {ReturnType<typeof closeAction>} action
   */
  async #retry(code, reason, action) {
    this.#attempt += 1;
    const generation = this.#generation;
    /** @type {TokenContext["reason"] | null} */
    let tokenReason = this.#getToken ? "reconnect" : null;
    if (action === "token" || action === "refresh") {
      // The old token is refused: a new one first, or stop.
      tokenReason = action === "token" ? "unauthorized" : "expired";
      let token = null;
      try {
        token = await this.#freshToken(tokenReason);
      } catch (error) {
        this.#report(error);
      }
      if (generation !== this.#generation) return; // closed meanwhile
      if (!token) {
        this.#stop(code, reason || "the token was refused and there is no other");
        return;
      }
      this.#token = token;
      tokenReason = null;
    }
    // "At once" once in a row; if that fails too, back off.
    const now = (action === "now" || action === "refresh") && this.#attempt === 1;
    const delay = now ? 0 : this.#backoff(this.#attempt);
    this.#setState({ state: "disconnected", code, reason, delay, attempt: this.#attempt });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (generation === this.#generation) void this.#open(tokenReason);
    }, delay);
  }

  /**
   * A jittered exponential backoff: the delay doubles from `initialDelay` up
   * to `maxDelay`, each drawn at random between half and all of it.
   * @param {number} attempt 1 for the first retry
   * @returns {number} ms
   */
  #backoff(attempt) {
    const { initialDelay, maxDelay } = this.#reconnect ?? { initialDelay: 500, maxDelay: 30_000 };
    const base = Math.min(maxDelay, initialDelay * 2 ** (attempt - 1));
    return Math.round(base / 2 + (Math.random() * base) / 2);
  }

  /**
   * Stop for good: the server refused and nothing can be done, or no reconnect.
   * @param {number} code
   * @param {string} reason
   */
  #stop(code, reason) {
    const kind =
      code >= 4000 && code <= 4099 && code !== 4003 ? "unauthorized" : CLIENT_ERRORS.closed;
    this.#halt(new RoomcastError(kind, `stopped: ${reason} (${code})`, { closeCode: code }));
    this.#setState({ state: "closed", code, reason });
  }

  /**
   * Forget the connection and everything waiting on it.
   * @param {RoomcastError} error what the waiting promises are rejected with
   */
  #halt(error) {
    this.#generation += 1;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = null;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#disconnected(error);
    for (const r of this.#rooms.values()) for (const waiter of r.waiters) waiter.reject(error);
    this.#rooms.clear();
    for (const waiter of this.#connectWaiters.splice(0)) waiter.reject(error);
  }

  /**
   * The connection is gone: fail what waited on it, keep what the next one resumes.
   * @param {RoomcastError} error
   */
  #disconnected(error) {
    if (this.#connectTimer) clearTimeout(this.#connectTimer);
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
    if (this.#drainTimer) clearTimeout(this.#drainTimer);
    this.#connectTimer = this.#heartbeatTimer = this.#drainTimer = null;
    this.#queue = [];
    this.#typing.clear();
    for (const cursor of this.#cursors.values()) if (cursor.timer) clearTimeout(cursor.timer);
    this.#cursors.clear();
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      // A join's promise waits on for the next connection, which joins again.
      if (pending.type !== "join_room") pending.reject(error);
    }
    this.#pending.clear();
    for (const r of this.#rooms.values()) {
      r.inRoom = r.joining = r.heldDropped = false;
      r.held = null;
      // A join being answered page by page starts over on the next
      // connection, from the last event handed over.
      r.replay = null;
      if (r.retry) clearTimeout(r.retry);
      r.retry = null;
    }
  }

  /** @param {StateChange} change */
  #setState(change) {
    if (this.#state === change.state && change.state !== "disconnected") return;
    this.#state = change.state;
    this.#emit(this.#stateHandlers, change);
  }

  // -- rooms -----------------------------------------------------------------------

  /**
   * Join a room. While disconnected the room is remembered and joined on
   * the next connection. Every joined room is joined again after a
   * reconnect, from the last event seen.
   * @param {string} room
   * @param {{since?: Position}} [options] resume from a position (one saved across a page reload)
   * @returns {Promise<Joined>} rejected with the server's error (`forbidden`, ...)
   */
  join(room, options = {}) {
    if (typeof room !== "string" || !room) {
      return Promise.reject(new TypeError("roomcast: join(room) needs a room name"));
    }
    const r = this.#room(room);
    r.wanted = true;
    if (options.since && !r.known) r.since = options.since;
    return new Promise((resolve, reject) => {
      r.waiters.push({ resolve, reject });
      if (this.#state === "connected" && !r.joining) this.#sendJoin(r);
    });
  }

  /**
   * Leave a room: stop receiving its events; it is not joined again after a reconnect.
   * @param {string} room
   * @returns {Promise<void>}
   */
  async leave(room) {
    const r = this.#rooms.get(room);
    if (r) {
      r.wanted = false;
      const error = new RoomcastError(CLIENT_ERRORS.left, `left ${room} before it was joined`);
      for (const waiter of r.waiters.splice(0)) waiter.reject(error);
      if (r.replay) {
        // Its missed events may still be coming: they are ignored now.
        r.replay = null;
        r.joining = r.heldDropped = false;
        r.held = null;
      }
      r.replayed = r.refusals = 0;
      if (r.retry) clearTimeout(r.retry);
      r.retry = null;
      this.#typing.delete(room);
      const cursor = this.#cursors.get(room);
      if (cursor?.timer) clearTimeout(cursor.timer);
      this.#cursors.delete(room);
    }
    if (this.#state !== "connected" || (r && !r.inRoom && !r.joining)) {
      this.#rooms.delete(room); // the server holds no membership for it
      return;
    }
    try {
      await this.#request({ type: "leave_room", room });
    } catch (error) {
      if (!(error instanceof RoomcastError && error.code === "not_member")) throw error;
    }
    if (!this.#rooms.get(room)?.wanted) this.#rooms.delete(room);
  }

  /**
   * @param {string} name
   * @returns {RoomState}
   */
  #room(name) {
    let r = this.#rooms.get(name);
    if (!r) {
      r = {
        name,
        wanted: false,
        own: false,
        inRoom: false,
        joining: false,
        offset: 0,
        top: 0,
        epoch: "",
        known: false,
        since: null,
        asked: null,
        held: null,
        heldDropped: false,
        members: new Map(),
        waiters: [],
        replay: null,
        replayed: 0,
        refusals: 0,
        retry: null,
      };
      this.#rooms.set(name, r);
    }
    return r;
  }

  /**
   * Send `join_room` for a room, from its last position when there is one.
   * @param {RoomState} r
   */
  #sendJoin(r) {
    const since = this.position(r.name) ?? r.since;
    r.joining = true;
    if (r.retry) clearTimeout(r.retry);
    r.retry = null;
    // The server holds back a room's live events until it answers a join,
    // but only for rooms the connection was not in yet. For rooms it is
    // already in (its own rooms), the client holds them back itself, so that
    // the replayed events come first.
    if (since && r.inRoom) r.held = [];
    r.asked = since;
    const frame = { type: "join_room", room: r.name, ...(since ? { since } : {}) };
    this.#request(frame, { internal: true, since }).catch((error) => this.#joinFailed(r, error));
  }

  /**
   * A join_room was refused, timed out, or its connection dropped.
   * @param {RoomState} r
   * @param {Error} error
   */
  #joinFailed(r, error) {
    const code = error instanceof RoomcastError ? error.code : "";
    // Dropped with its connection: the next connection joins it again.
    if (code === CLIENT_ERRORS.disconnected || this.#rooms.get(r.name) !== r) return;
    r.joining = false;
    if (code === "overloaded" && r.wanted) {
      // The server is short of memory or of reads for now ("retry after a
      // backoff"): the room stays wanted and its join() waits.
      r.refusals += 1;
      r.retry = setTimeout(() => {
        r.retry = null;
        if (this.#state === "connected" && this.#rooms.get(r.name) === r && !r.joining) {
          this.#sendJoin(r);
        }
      }, this.#backoff(r.refusals));
      return;
    }
    r.replayed = r.refusals = 0;
    for (const waiter of r.waiters.splice(0)) waiter.reject(error);
    // Still wanted: a late answer, or the next connection, joins it.
    if (code === CLIENT_ERRORS.timeout) return;
    if (r.inRoom) {
      // The connection is still in the room on the server (one of its own
      // rooms, or a second join): if it was resuming, what it missed is lost.
      if (r.held) this.#release(r, true, "the room could not be resumed: " + error.message);
      return;
    }
    const resumed = r.known; // joined before: a resume the server refused (the policy changed, ...)
    this.#rooms.delete(r.name);
    if (resumed && error instanceof RoomcastError) {
      this.#emit(this.#roomHandlers, { type: "left", room: r.name, by: "server", error });
    }
  }

  /**
   * `room_joined`: an answer to join_room (`since` as asked), or a backend's JoinRoom.
   * @param {any} frame
   * @param {Pending | null} pending
   */
  #roomJoined(frame, pending) {
    const existing = this.#rooms.get(frame.room);
    if (existing && !existing.wanted) return; // left meanwhile; room_left follows
    const r = existing ?? this.#room(frame.room);
    // A reply carries the request's id (a late one, after its timeout, too);
    // a backend's JoinRoom none.
    const by = frame.id == null ? "server" : "client";
    const members = new Map(
      (frame.presence ?? []).map((/** @type {Member} */ m) => [m.connection_id, m]),
    );
    if (r.replay && by === "server") {
      // A backend's JoinRoom while a join's missed events are still coming:
      // they go on coming, and the join finishes with the last of them.
      r.members = members;
      this.#emit(this.#roomHandlers, { type: "joined", room: r.name, by, recovered: true });
      return;
    }
    const since = pending ? (pending.since ?? null) : by === "client" ? r.asked : null;
    r.wanted = r.inRoom = true;
    r.since = r.asked = null;
    r.members = members;
    if (since && frame.recovered) {
      r.offset = Math.max(r.offset, since.offset); // what the app saw already
    } else if (since) {
      this.#gap(r, frame.reason || "the server could not replay the missed events", frame);
      r.offset = 0; // nothing was replayed: what comes next starts afresh
    } else if (r.known && r.epoch !== frame.epoch && (r.offset || r.top)) {
      this.#gap(r, "the room's history was reset (epoch changed)", frame);
      r.offset = 0;
    }
    r.epoch = frame.epoch;
    // Known from here: a new connection in the middle of the missed events
    // resumes from the last one handed over. `top` waits for the last page.
    r.known = true;
    r.refusals = 0;
    /** @type {Replay} */
    const replay = {
      top: { offset: frame.offset, epoch: frame.epoch },
      presence: frame.presence ?? [],
      by,
      resumed: Boolean(since),
      recovered: frame.recovered !== false,
      reason: frame.reason ?? "",
    };
    r.replay = replay;
    r.joining = true; // until the last page: no second join_room meanwhile
    // The server sends every page before the room's live events; the client
    // holds them too, so that none overtakes a page whatever comes between.
    if (frame.more) r.held ??= [];
    this.#replay(r, replay, replay.recovered ? (frame.missed ?? []) : [], frame.more === true);
  }

  /**
   * `missed`: a further page of the missed events of a join whose
   * `room_joined` said `more`. Ignored for a room whose join is not being
   * answered (left meanwhile, or restarted on a new connection).
   * @param {any} frame
   */
  #missed(frame) {
    const r = this.#rooms.get(frame.room);
    const replay = r?.replay;
    if (!r || !replay) return;
    if (frame.recovered === false) {
      // The rest is lost (the history moved on meanwhile, or the server is
      // overloaded): as for a position that cannot be resumed.
      replay.recovered = false;
      replay.reason = frame.reason || "the server could not replay the rest of the missed events";
      this.#gap(r, replay.reason, replay.top);
      r.offset = 0; // what comes next starts afresh
      this.#joined(r, replay);
      return;
    }
    this.#replay(r, replay, frame.events ?? [], frame.more === true);
  }

  /**
   * Hand a page of missed events to the app; after the last page, the join is done.
   * @param {RoomState} r
   * @param {Replay} replay
   * @param {RoomEvent[]} events
   * @param {boolean} more pages follow
   */
  #replay(r, replay, events, more) {
    for (const event of events) {
      if (r.replay !== replay) return; // a handler left the room, or closed the client
      if (this.#deliver(event, r, true)) r.replayed += 1;
    }
    if (r.replay === replay && !more) this.#joined(r, replay);
  }

  /**
   * A join is done, every missed event handed over: release the live events
   * held meanwhile, tell the app, settle the join()s waiting.
   * @param {RoomState} r
   * @param {Replay} replay
   */
  #joined(r, replay) {
    r.replay = null;
    r.epoch = replay.top.epoch;
    r.top = Math.max(replay.top.offset, 0);
    this.#release(r, false, "");
    /** @type {Joined} */
    const joined = {
      room: r.name,
      offset: replay.top.offset,
      epoch: replay.top.epoch,
      presence: replay.presence,
      recovered: replay.recovered,
      reason: replay.reason,
      missed: r.replayed,
    };
    r.replayed = 0;
    this.#emit(this.#roomHandlers, {
      type: "joined",
      room: r.name,
      by: replay.by,
      resumed: replay.resumed,
      recovered: joined.recovered,
    });
    for (const waiter of r.waiters.splice(0)) waiter.resolve(joined);
  }

  /**
   * Hand over the events held back while a room resumed.
   * @param {RoomState} r
   * @param {boolean} lost the resume failed: report a gap first
   * @param {string} reason
   */
  #release(r, lost, reason) {
    const held = r.held ?? [];
    const dropped = r.heldDropped;
    r.held = null;
    r.heldDropped = false;
    r.joining = false;
    if (lost) {
      this.#gap(r, reason, { offset: Math.max(r.offset, r.top), epoch: r.epoch });
      r.offset = r.top = 0; // no gap check against the old position
    }
    for (const event of held) this.#deliver(event, r, true);
    if (dropped) {
      const why = `more than ${this.#maxHeld} events arrived while the room resumed`;
      this.#gap(r, why, { offset: Math.max(r.offset, r.top), epoch: r.epoch });
      r.offset = r.top = 0;
    }
  }

  /**
   * `room_left`: an answer to leave_room, or a backend's LeaveRoom.
   * @param {any} frame
   */
  #roomLeft(frame) {
    const by = frame.id == null ? "server" : "client";
    const r = this.#rooms.get(frame.room);
    // Gone, unless the app joined it again meanwhile; a backend's LeaveRoom always wins.
    if (r && (!r.wanted || by === "server")) {
      this.#rooms.delete(frame.room);
      if (r.retry) clearTimeout(r.retry);
      const error = new RoomcastError(
        CLIENT_ERRORS.left,
        `taken out of ${frame.room} by the server before it was joined`,
      );
      for (const waiter of r.waiters.splice(0)) waiter.reject(error);
    } else if (r) r.inRoom = false;
    this.#emit(this.#roomHandlers, { type: "left", room: frame.room, by });
  }

  /**
   * @param {RoomState} r
   * @param {string} reason
   * @param {{offset: number, epoch: string}} at where delivery goes on
   */
  #gap(r, reason, at) {
    this.#emit(this.#gapHandlers, { room: r.name, reason, offset: at.offset, epoch: at.epoch });
  }

  // -- acting in rooms ---------------------------------------------------------------

  /**
   * Publish an event to rooms the client has joined. The sender gets its own
   * event like every member, before the promise resolves.
   * @param {string} event e.g. "chat.message"
   * @param {Record<string, unknown>} payload a JSON object, at most 64 KiB encoded
   * @param {string | string[]} rooms
   * @returns {Promise<Record<string, number>>} each room's offset (0 where no history is kept)
   */
  async send(event, payload, rooms) {
    const list = typeof rooms === "string" ? [rooms] : rooms;
    const reply = await this.#request({
      type: "send_message",
      event,
      payload: payload ?? {},
      rooms: list,
    });
    return reply.offsets;
  }

  /**
   * Say whether the user is typing in a room; only changes are sent.
   * @param {string} room
   * @param {boolean} state
   * @returns {boolean} false when it could not be sent (not connected, rate limit)
   */
  typing(room, state) {
    if (this.#state !== "connected") return false;
    if ((this.#typing.get(room) ?? false) === state) return true;
    if (!this.#trySend({ type: "typing", room, state })) return false;
    this.#typing.set(room, state);
    return true;
  }

  /**
   * Share the user's cursor in a room. At most one frame per room every
   * `cursorInterval` ms leaves; the latest position wins.
   * @param {string} room
   * @param {Record<string, unknown>} position
   * @returns {boolean} false when not connected
   */
  cursor(room, position) {
    if (this.#state !== "connected") return false;
    let cursor = this.#cursors.get(room);
    if (!cursor)
      this.#cursors.set(room, (cursor = { last: -Infinity, pending: null, timer: null }));
    const slot = cursor;
    const wait = slot.last + this.#cursorInterval - Date.now();
    if (slot.timer || wait > 0) {
      slot.pending = position;
      slot.timer ??= setTimeout(() => {
        slot.timer = null;
        const latest = slot.pending;
        slot.pending = null;
        if (
          latest &&
          this.#state === "connected" &&
          this.#trySend({ type: "cursor", room, position: latest })
        ) {
          slot.last = Date.now();
        }
      }, wait);
      return true;
    }
    if (!this.#trySend({ type: "cursor", room, position })) return false;
    slot.last = Date.now();
    return true;
  }

  /**
   * Who is in a room, asked of the server (any room the client may subscribe to).
   *
   * The server answers in pages of at most `ws_max_reply_bytes`; this asks
   * for every page in turn (`page_token`) and resolves with all the members,
   * oldest first, each once. Members who come or go while it pages may be
   * listed or not.
   * @param {string} room
   * @returns {Promise<Member[]>} rejected with the server's error (`forbidden`,
   *   `overloaded`: retry after a backoff, ...)
   */
  async presence(room) {
    /** @type {Map<string, Member>} */
    const members = new Map();
    /** @type {string | undefined} */
    let token;
    for (;;) {
      const reply = await this.#request({
        type: "presence",
        room,
        ...(token ? { page_token: token } : {}),
      });
      for (const member of reply.members ?? []) members.set(member.connection_id, member);
      const next = reply.next_page_token;
      // A token that does not move on would loop for ever.
      if (typeof next !== "string" || !next || next === token) return [...members.values()];
      token = next;
    }
  }

  /**
   * A page of a room's stored events, oldest first.
   *
   * A reply carries at most `limit` events and at most `ws_max_reply_bytes`
   * of them (at least one event however large). When `more` is true, stored
   * events follow: ask again from the last one to read on. A later page with
   * `recovered: false` means the history moved on between two pages: it
   * starts again from the oldest event held.
   *
   * ```js
   * const events = [];
   * for (let since; ; ) {
   *   const page = await rc.history(room, { since, limit: 1000 });
   *   events.push(...page.events);
   *   if (!page.more) break;
   *   const last = page.events[page.events.length - 1];
   *   since = { offset: last.offset, epoch: last.epoch };
   * }
   * ```
   * @param {string} room
   * @param {{since?: Position, limit?: number}} [options] limit 1-1000, default 100
   * @returns {Promise<History>} rejected with the server's error (`overloaded`: retry after a
   *   backoff, ...)
   */
  async history(room, options = {}) {
    const frame = { type: "history", room, ...options };
    const reply = await this.#request(frame);
    return {
      room: reply.room,
      events: reply.events,
      offset: reply.offset,
      epoch: reply.epoch,
      recovered: reply.recovered,
      more: reply.more === true,
    };
  }

  /**
   * Round trip to the server.
   * @returns {Promise<number>} milliseconds
   */
  async ping() {
    const started = Date.now();
    await this.#request({ type: "ping" });
    return Date.now() - started;
  }

  // -- frames out ----------------------------------------------------------------

  /**
   * Send a frame with an id; its reply (or `error`) settles the promise.
   * @param {Record<string, unknown>} frame
   * @param {{internal?: boolean, since?: Position | null}} [options] internal: the client's own
   *   frame, never refused by the queue limit; since: what a join_room asked
   * @returns {Promise<any>}
   */
  #request(frame, options = {}) {
    if (this.#state !== "connected") {
      return Promise.reject(
        new RoomcastError(CLIENT_ERRORS.disconnected, `not connected (${this.#state})`),
      );
    }
    const id = ++this.#ids;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new RoomcastError(
            CLIENT_ERRORS.timeout,
            `no answer to ${frame.type} within ${this.#requestTimeout} ms`,
          ),
        );
      }, this.#requestTimeout);
      const type = String(frame.type);
      const room = typeof frame.room === "string" ? frame.room : undefined;
      this.#pending.set(id, { type, room, since: options.since ?? null, resolve, reject, timer });
      try {
        this.#write({ ...frame, id }, options.internal ?? false);
      } catch (error) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(error);
      }
    });
  }

  /**
   * Send a frame that has no reply; false when the rate limit refused it.
   * @param {Record<string, unknown>} frame
   */
  #trySend(frame) {
    try {
      this.#write(frame, false);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Write a frame now, or queue it behind the client-side rate limit.
   * @param {Record<string, unknown>} frame
   * @param {boolean} internal
   */
  #write(frame, internal) {
    const text = JSON.stringify(frame);
    // A UTF-8 character takes at most 3 bytes per UTF-16 unit: count only when it may matter.
    if (text.length * 3 > this.#maxFrameBytes) {
      const bytes = new TextEncoder().encode(text).length;
      if (bytes > this.#maxFrameBytes) {
        throw new RoomcastError(
          CLIENT_ERRORS.tooLarge,
          `${frame.type}: ${bytes} bytes; frames are limited to ${this.#maxFrameBytes}`,
        );
      }
    }
    const rate = this.#rate;
    if (!rate) {
      this.#writeNow(text);
      return;
    }
    this.#refill();
    if (this.#queue.length === 0 && this.#tokens >= 1) {
      this.#tokens -= 1;
      this.#writeNow(text);
      return;
    }
    if (!internal && this.#queue.length >= rate.maxQueued) {
      throw new RoomcastError(
        CLIENT_ERRORS.rateLimited,
        `more than ${rate.perSecond} frames a second and ${rate.maxQueued} waiting; slow down`,
      );
    }
    this.#queue.push(text);
    this.#scheduleDrain();
  }

  /** @param {string} text */
  #writeNow(text) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== OPEN) {
      throw new RoomcastError(CLIENT_ERRORS.disconnected, "not connected");
    }
    ws.send(text);
  }

  #refill() {
    const rate = /** @type {Required<RateOptions>} */ (this.#rate);
    const now = Date.now();
    this.#tokens = Math.min(
      rate.burst,
      this.#tokens + ((now - this.#refilled) * rate.perSecond) / 1000,
    );
    this.#refilled = now;
  }

  #scheduleDrain() {
    if (this.#drainTimer) return;
    const rate = /** @type {Required<RateOptions>} */ (this.#rate);
    const wait = Math.max(1, Math.ceil(((1 - this.#tokens) * 1000) / rate.perSecond));
    this.#drainTimer = setTimeout(() => {
      this.#drainTimer = null;
      this.#refill();
      try {
        while (this.#queue.length && this.#tokens >= 1) {
          this.#tokens -= 1;
          this.#writeNow(/** @type {string} */ (this.#queue.shift()));
        }
      } catch {
        return; // the socket is gone; its close event cleans up
      }
      if (this.#queue.length) this.#scheduleDrain();
    }, wait);
  }

  /** Refresh the token on `token.expiring`. */
  async #refreshToken() {
    const generation = this.#generation;
    try {
      const token = this.#getToken ? await this.#getToken({ reason: "expiring" }) : null;
      // Without one, the server closes with 4002 at expiry, and the client asks again.
      if (!token || generation !== this.#generation) return;
      this.#token = token;
      const reply = await this.#request({ type: "auth", token }, { internal: true });
      if (this.#session && generation === this.#generation) {
        this.#session = { ...this.#session, expires_at: reply.expires_at };
      }
    } catch (error) {
      this.#report(error);
    }
  }

  #startHeartbeat() {
    const interval =
      typeof this.#heartbeat === "number"
        ? this.#heartbeat
        : this.#heartbeat
          ? (this.#session?.heartbeat ?? 0) * 1000
          : 0;
    if (!(interval > 0)) return;
    const generation = this.#generation;
    let waiting = false;
    // Browsers answer the server's WebSocket pings without telling the page,
    // so a dead connection is found with the protocol's own ping.
    this.#heartbeatTimer = setInterval(() => {
      if (waiting || Date.now() - this.#lastHeard < interval) return;
      waiting = true;
      this.#request({ type: "ping" }, { internal: true }).then(
        () => {
          waiting = false;
        },
        (error) => {
          waiting = false;
          if (generation === this.#generation && error.code === CLIENT_ERRORS.timeout) {
            this.#drop("no pong from the server");
          }
        },
      );
    }, interval);
  }

  // -- frames in -------------------------------------------------------------------

  /** @param {unknown} data */
  #receive(data) {
    this.#lastHeard = Date.now();
    let frame;
    try {
      frame = typeof data === "string" ? JSON.parse(data) : null;
    } catch {
      frame = null;
    }
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") {
      this.#report(
        new RoomcastError(
          CLIENT_ERRORS.badFrame,
          "the server sent a frame that is not a JSON object",
        ),
      );
      return;
    }
    /** @type {Pending | null} */
    let pending = null;
    if (typeof frame.id === "number" && REPLIES.has(frame.type)) {
      pending = this.#pending.get(frame.id) ?? null;
      if (pending) {
        this.#pending.delete(frame.id);
        clearTimeout(pending.timer);
      }
    }
    try {
      this.#dispatch(frame, pending);
    } catch (error) {
      this.#report(error);
    }
  }

  /**
   * @param {any} frame
   * @param {Pending | null} pending
   */
  #dispatch(frame, pending) {
    switch (frame.type) {
      case "connection.confirmed":
        this.#confirmed(frame);
        return;
      case "event":
        this.#deliver(frame, this.#rooms.get(frame.room), false);
        return;
      case "room_joined":
        this.#roomJoined(frame, pending);
        break;
      case "missed":
        this.#missed(frame);
        return;
      case "room_left":
        this.#roomLeft(frame);
        break;
      case "presence.join":
      case "presence.leave":
        this.#presenceChanged(frame);
        return;
      case "typing":
        this.#emit(this.#typingHandlers, {
          room: frame.room,
          user: frame.user,
          state: frame.state,
        });
        return;
      case "cursor":
        this.#emit(this.#cursorHandlers, {
          room: frame.room,
          user: frame.user,
          position: frame.position,
        });
        return;
      case "token.expiring":
        void this.#refreshToken();
        return;
      case "error": {
        const error = new RoomcastError(frame.code, frame.message, { frame });
        if (pending) pending.reject(error);
        else this.#report(error);
        return;
      }
    }
    pending?.resolve(frame);
  }

  /** @param {Confirmed} frame */
  #confirmed(frame) {
    if (this.#connectTimer) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#session = frame;
    this.#attempt = 0;
    this.#tokens = this.#rate?.burst ?? 0;
    this.#refilled = Date.now();
    const own = new Set(frame.rooms);
    for (const r of this.#rooms.values()) {
      if (r.own && !own.has(r.name)) this.#rooms.delete(r.name); // another identity's rooms
    }
    for (const name of frame.rooms) {
      const r = this.#room(name);
      r.own = r.wanted = r.inRoom = true;
    }
    this.#setState({ state: "connected" });
    for (const waiter of this.#connectWaiters.splice(0)) waiter.resolve(frame);
    // Resume every room: own rooms (the server put us back, the client asks
    // what it missed, or learns where the room stands) and the app's rooms.
    for (const r of this.#rooms.values()) if (r.wanted && !r.joining) this.#sendJoin(r);
    this.#startHeartbeat();
  }

  /**
   * An `event` frame, live or replayed: deduplicated by offset, checked for gaps, dispatched.
   * @param {RoomEvent} event
   * @param {RoomState | undefined} r
   * @param {boolean} replayed from `missed` or held back; never held again
   * @returns {boolean} it went to the handlers (not held back, not seen already)
   */
  #deliver(event, r, replayed) {
    if (r && r.held && !replayed) {
      // Bounded: past maxHeld the rest is dropped, and reported as a gap on release.
      if (r.held.length < this.#maxHeld) r.held.push(event);
      else r.heldDropped = true;
      return false;
    }
    if (r && event.offset > 0) {
      if (r.epoch !== event.epoch) {
        if (r.known && (r.offset || r.top)) {
          this.#gap(r, "the room's history was reset (epoch changed)", {
            offset: event.offset - 1,
            epoch: event.epoch,
          });
        }
        r.epoch = event.epoch;
        r.offset = r.top = 0;
        r.known = true;
      }
      if (event.offset <= r.offset) return false; // seen already (replayed and live)
      const last = Math.max(r.offset, r.top);
      if (last > 0 && event.offset > last + 1) {
        this.#gap(r, `events ${last + 1} to ${event.offset - 1} were not delivered`, {
          offset: event.offset - 1,
          epoch: event.epoch,
        });
      }
      r.offset = event.offset;
    }
    this.#emit(this.#handlers.get(event.event), event);
    this.#emit(this.#handlers.get("*"), event);
    return true;
  }

  /** @param {any} frame */
  #presenceChanged(frame) {
    const type = frame.type === "presence.join" ? "join" : "leave";
    const r = this.#rooms.get(frame.room);
    if (r && frame.user?.connection_id) {
      if (type === "join")
        r.members.set(frame.user.connection_id, { ...frame.user, joined_at: Date.now() / 1000 });
      else r.members.delete(frame.user.connection_id);
    }
    this.#emit(this.#presenceHandlers, { type, room: frame.room, user: frame.user });
  }

  /**
   * Call every handler; one that throws is reported and does not stop the others.
   * @template T
   * @param {Set<(value: T) => void> | undefined} handlers
   * @param {T} value
   */
  #emit(handlers, value) {
    if (!handlers) return;
    for (const handler of [...handlers]) {
      try {
        handler(value);
      } catch (error) {
        if (handlers === this.#errorHandlers)
          console.error("roomcast: an onError handler threw", error);
        else this.#report(error);
      }
    }
  }

  /** @param {unknown} error */
  #report(error) {
    const value = error instanceof Error ? error : new Error(String(error));
    if (this.#errorHandlers.size) this.#emit(this.#errorHandlers, value);
    else console.warn("roomcast:", value);
  }
}

/**
 * @template T
 * @param {Set<(value: T) => void>} set
 * @param {(value: T) => void} handler
 * @returns {() => void} removes the handler
 */
function listen(set, handler) {
  set.add(handler);
  return () => {
    set.delete(handler);
  };
}

export default Roomcast;
