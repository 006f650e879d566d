"""Monitor: alerts reach their rooms even when they fire because the broker is down."""

from __future__ import annotations

import asyncio
import contextlib

from google.protobuf.json_format import MessageToDict
from support.local_node import FakeConnection, FlakyBroker, local_node

from roomcast.node import Node
from roomcast.presence import ConnectionId
from roomcast.rooms import Room, RoomName
from roomcast.v1.event_pb2 import Event

HEALTH = Room.of(RoomName("platform.health"), None)


def alert_states(watcher: FakeConnection) -> list[str]:
    events = [Event.FromString(p.data) for p in watcher.delivered]
    return [
        MessageToDict(e.payload)["state"]
        for e in events
        if e.event == "platform.alert" and e.payload["rule"] == "broker_unreachable"
    ]


async def watched() -> tuple[Node, FlakyBroker, FakeConnection]:
    broker = FlakyBroker()
    node = await local_node(broker)
    watcher = FakeConnection(ConnectionId("ops"))
    node.hub.add(HEALTH, watcher)
    return node, broker, watcher


async def test_an_alert_fired_while_the_broker_is_down_is_published_when_it_is_back() -> None:
    node, broker, watcher = await watched()
    broker.down = True
    await node.monitor.tick()
    await node.monitor.tick()
    assert "broker_unreachable" in {a.rule for a in node.monitor.alerts.firing()}
    assert alert_states(watcher) == []
    broker.down = False
    await node.monitor.tick()  # resolves it, after publishing that it fired
    assert alert_states(watcher) == ["firing", "resolved"]
    await node.monitor.tick()
    assert alert_states(watcher) == ["firing", "resolved"]


async def test_alert_events_are_published_once() -> None:
    node, broker, watcher = await watched()
    broker.down = True
    await node.monitor.tick()
    broker.down = False
    await node.monitor.tick()
    broker.down = True
    await node.monitor.tick()
    broker.down = False
    await node.monitor.tick()
    assert alert_states(watcher) == ["firing", "resolved", "firing", "resolved"]


class CancelledAsItAnswers(FlakyBroker):
    """A broker whose health check completes just as its caller is cancelled."""

    task: asyncio.Task[None] | None = None
    halt = False

    async def healthy(self) -> bool:
        if self.halt:  # the test failed: end the monitor, which ignores cancel()
            raise RuntimeError("halt")
        assert self.task is not None
        self.task.cancel()  # the node closing, at this very moment
        return True


async def test_a_monitor_cancelled_during_a_health_check_stops() -> None:
    broker = CancelledAsItAnswers()
    node = await local_node(broker, metrics_interval=0.001)
    task = broker.task = asyncio.create_task(node.monitor.run())
    done, _ = await asyncio.wait([task], timeout=2.0)
    broker.halt = True
    await asyncio.gather(task, return_exceptions=True)
    assert task in done
    assert task.cancelled()


class SwallowsCancellation(FlakyBroker):
    """A health check during which the node closes, in a library that loses the cancellation.

    As redis-py does on Python 3.11: it writes every command under
    asyncio.wait_for, which returns normally when the write completes in
    the same turn as the cancellation.
    """

    node: Node | None = None
    closer: asyncio.Task[None] | None = None
    halt = False

    async def healthy(self) -> bool:
        if self.halt:  # the test failed: end the monitor for good
            raise asyncio.CancelledError
        if self.closer is None:
            assert self.node is not None
            self.closer = asyncio.create_task(self.node.close())
        # close() cancels the monitor here, and the cancellation is lost.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.01)
        return True


async def test_a_closing_node_stops_its_monitor_even_if_a_cancellation_is_lost() -> None:
    broker = SwallowsCancellation()
    node = broker.node = await local_node(broker, metrics_interval=0.001)
    node.supervisor.spawn("monitor", node.monitor.run)
    await asyncio.wait_for(_closer(broker), 2.0)
    assert broker.closer is not None
    done, _ = await asyncio.wait([broker.closer], timeout=2.0)
    broker.halt = True
    await asyncio.gather(broker.closer, return_exceptions=True)
    assert broker.closer in done


async def _closer(broker: SwallowsCancellation) -> None:
    while broker.closer is None:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
