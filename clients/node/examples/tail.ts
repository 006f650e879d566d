// Follow rooms and patterns; print each event as one line of proto3 JSON.
// The stream's markers (recovery, subscribed) go to standard error.
//
//   node dist/examples/tail.js ROOM_OR_PATTERN... [--tenant T] [--since ROOM=OFFSET:EPOCH] [--count N]
//
// ROOMCAST_TARGET (default localhost:50051) and ROOMCAST_TOKEN say where and who.
// Stops after --count events, on Ctrl-C, or when the server ends the stream.
import { parseArgs } from "node:util";
import { create, toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  connect,
  EventSchema,
  fromEnvironment,
  RecoverySchema,
  StreamPositionSchema,
  statusName,
  type StreamPosition,
} from "../src/index.js";

const { positionals: rooms, values } = parseArgs({
  allowPositionals: true,
  options: {
    tenant: { type: "string", default: "" },
    since: { type: "string", multiple: true, default: [] },
    count: { type: "string" },
  },
});
if (rooms.length === 0) {
  console.error("usage: tail.js ROOM_OR_PATTERN... [--tenant T] [--since ROOM=OFFSET:EPOCH] [--count N]");
  process.exit(2);
}

const since: { [room: string]: StreamPosition } = {};
for (const item of values.since) {
  const match = /^(.+)=(\d+):(.*)$/.exec(item);
  if (!match) {
    console.error(`--since ${item}: expected ROOM=OFFSET:EPOCH`);
    process.exit(2);
  }
  const [, room, offset, epoch] = match as unknown as [string, string, string, string];
  since[room] = create(StreamPositionSchema, { offset: BigInt(offset), epoch });
}
const limit = values.count === undefined ? Infinity : Number(values.count);

const stop = new AbortController();
process.on("SIGINT", () => stop.abort());
const { realtime } = connect(fromEnvironment());
let seen = 0;
try {
  const stream = realtime.subscribe({ rooms, since, tenantId: values.tenant }, { signal: stop.signal });
  follow: for await (const message of stream) {
    if (message.recovery) {
      console.error(`recovery: ${toJsonString(RecoverySchema, message.recovery)}`);
    }
    if (message.subscribed) {
      console.error(`subscribed: ${message.subscribed.rooms.join(" ")}`);
    }
    for (const event of message.events) {
      console.log(toJsonString(EventSchema, event));
      if (++seen >= limit) break follow;
    }
  }
} catch (error) {
  const failure = ConnectError.from(error);
  if (failure.code !== Code.Canceled) {
    console.error(`${statusName(failure.code)}: ${failure.rawMessage}`);
    process.exit(1);
  }
}
// The transport keeps its HTTP/2 connection open for further calls; this
// program makes none.
process.exit(0);
