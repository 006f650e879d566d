"""Generated protobuf and gRPC code for roomcast.v1 (scripts/gen-proto; never edit by hand)."""
