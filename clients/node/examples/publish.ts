// Publish one event and print where it landed, as proto3 JSON.
//
//   node dist/examples/publish.js ROOM EVENT [JSON] [--tenant T] [--idempotency-key K]
//
// ROOMCAST_TARGET (default localhost:50051) and ROOMCAST_TOKEN say where and who.
import { parseArgs } from "node:util";
import { toJsonString } from "@bufbuild/protobuf";
import type { JsonObject } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { connect, fromEnvironment, PublishResponseSchema, statusName } from "../src/index.js";

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    tenant: { type: "string", default: "" },
    "idempotency-key": { type: "string", default: "" },
  },
});
const [room, event, json = "{}"] = positionals;
if (!room || !event) {
  console.error("usage: publish.js ROOM EVENT [JSON] [--tenant T] [--idempotency-key K]");
  process.exit(2);
}

const { realtime } = connect(fromEnvironment());
try {
  const response = await realtime.publish({
    room,
    event,
    payload: JSON.parse(json) as JsonObject,
    tenantId: values.tenant,
    idempotencyKey: values["idempotency-key"],
  });
  console.log(toJsonString(PublishResponseSchema, response));
} catch (error) {
  const failure = ConnectError.from(error);
  // The status name (PERMISSION_DENIED, ...) and the server's message.
  console.error(`${statusName(failure.code)}: ${failure.rawMessage}`);
  process.exit(1);
}
