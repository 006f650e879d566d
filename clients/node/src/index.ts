// A roomcast connection for Node.js: the stubs generated from
// proto/roomcast/v1 (src/gen, by protoc-gen-es) over a gRPC transport
// (HTTP/2) from @connectrpc/connect-node, with the bearer token attached to
// every call.
import { type Client, Code, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AdminService } from "./gen/roomcast/v1/admin_pb.js";
import { RealtimeService } from "./gen/roomcast/v1/realtime_pb.js";

export * from "./gen/roomcast/v1/admin_pb.js";
export * from "./gen/roomcast/v1/event_pb.js";
export * from "./gen/roomcast/v1/realtime_pb.js";

export interface RoomcastOptions {
  /** "host:port" of the node's gRPC port. */
  target: string;
  /** A JWT, or a function returning the current one (asked before every call). */
  token: string | (() => string);
  /** Reach the node through a TLS-terminating proxy (roomcast itself speaks plaintext). */
  tls?: boolean;
}

export interface Roomcast {
  realtime: Client<typeof RealtimeService>;
  admin: Client<typeof AdminService>;
}

/** Clients of both services, sharing one HTTP/2 connection. */
export function connect(options: RoomcastOptions): Roomcast {
  const token = typeof options.token === "string" ? () => options.token as string : options.token;
  const bearer: Interceptor = (next) => async (request) => {
    request.header.set("authorization", `Bearer ${token()}`);
    return next(request);
  };
  const transport = createGrpcTransport({
    baseUrl: `${options.tls ? "https" : "http"}://${options.target}`,
    interceptors: [bearer],
  });
  return {
    realtime: createClient(RealtimeService, transport),
    admin: createClient(AdminService, transport),
  };
}

/** The target and token the examples read from the environment. */
export function fromEnvironment(): RoomcastOptions {
  const token = process.env.ROOMCAST_TOKEN;
  if (!token) {
    throw new Error("set ROOMCAST_TOKEN to a roomcast JWT (roomcast serve --dev prints some)");
  }
  return { target: process.env.ROOMCAST_TARGET ?? "localhost:50051", token };
}

/** The gRPC status name of a code, as the server and grpcurl spell it: Code.PermissionDenied -> "PERMISSION_DENIED". */
export function statusName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
