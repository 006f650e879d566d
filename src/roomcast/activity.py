"""Activity reports (``TrackActivity``): checked, and shaped as an event payload.

Pure: the node publishes the payload as ``user.activity`` to the tenant's
admins room.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from .errors import InvalidArgument
from .gate import check_json
from .rooms import parse_event_name, parse_segment

__all__ = ["MAX_SESSION_ID", "MAX_USER_AGENT", "activity_payload"]

MAX_SESSION_ID = 128
MAX_USER_AGENT = 512


def activity_payload(
    *,
    user_id: str,
    tenant_id: str,
    action: str,
    session_id: str = "",
    ip_address: str = "",
    user_agent: str = "",
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``user.activity`` payload for a report.

    Raises:
        InvalidArgument: naming the field that is missing or malformed.
    """
    if not user_id:
        raise InvalidArgument("user_id: required")
    parse_segment(user_id, field_name="user_id")
    if not action:
        raise InvalidArgument("action: required, for example 'login'")
    try:
        parse_event_name(action)
    except InvalidArgument as error:
        raise InvalidArgument(f"action: {error.message.split(': ', 1)[-1]}") from error
    if len(session_id) > MAX_SESSION_ID:
        raise InvalidArgument(f"session_id: longer than {MAX_SESSION_ID} characters")
    if len(user_agent) > MAX_USER_AGENT:
        raise InvalidArgument(f"user_agent: longer than {MAX_USER_AGENT} characters")
    if ip_address:
        try:
            ip_address = str(ipaddress.ip_address(ip_address))
        except ValueError as error:
            raise InvalidArgument(
                f"ip_address: {ip_address[:60]!r} is not an IP address"
            ) from error
    payload: dict[str, Any] = {"user_id": user_id, "tenant_id": tenant_id, "action": action}
    for key, value in (
        ("session_id", session_id),
        ("ip_address", ip_address),
        ("user_agent", user_agent),
    ):
        if value:
            payload[key] = value
    if details:
        # At level 2 of the event's payload: the gate's limit, named for this field.
        check_json(details, field="details", levels=2)
        payload["details"] = dict(details)
    return payload
