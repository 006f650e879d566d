"""What the tests share, one job a module.

- :mod:`support.waiting`: ``UNIT``, the one tunable time unit, and ``eventually``.
- :mod:`support.ports`: ``free_port``.
- :mod:`support.tokens`: the test secret, JWT ``claims``, real tokens and their principals.
- :mod:`support.paths`: the repository's root folder.
- :mod:`support.server`: a `roomcast serve` process (``start_server``, ``serving``).
- :mod:`support.grpc`: gRPC clients of it (``bearer``, ``Stream``, ``payload``).
- :mod:`support.ws`: WebSocket clients of the bridge (``WsClient``, ``confirmed``, ``websockets``).
- :mod:`support.redis`: `redis-server` processes and a Redis Cluster.
- :mod:`support.cluster`: several servers as one platform.
- :mod:`support.fixtures`: the fixtures more than one folder uses, defined once.
- :mod:`support.clients`: the types of the client packages' fixtures.
- :mod:`support.local_node`: a real ``Node`` in the test's own process.
- :mod:`support.inputs`: publishes as a shell hands them to the core (``item``).
- :mod:`support.loopback`: both ends of a real WebSocket connection, in process.
- :mod:`support.grpc_local`: a gRPC server in process, and a channel to it.
- :mod:`support.brokers`: brokers as a node sees them (rooms, drafts, what they deliver).
- :mod:`support.conformance`: the broker conformance suite, run by every broker.
- :mod:`support.redis_brokers`: started Redis brokers under a prefix of their own.
- :mod:`support.nesting`, :mod:`support.strategies`: deep JSON values, property-test strategies.

``pyproject.toml`` puts ``tests/`` on the path, so ``from support.server import
start_server`` works from any test module.
"""

__all__: list[str] = []
