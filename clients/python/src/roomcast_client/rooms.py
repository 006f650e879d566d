"""The rooms and event names the helper verbs of ``RoomcastClient`` use.

They follow the server's built-in policy (``docs/grpc.md``, "The built-in
policy"): browsers and services that follow these rooms see what the helpers
send.

| helper                    | room                          | event               |
| ------------------------- | ----------------------------- | ------------------- |
| send_user_notification    | ``user.{user}.notifications`` | ``user.notification`` |
| send_to_platform_admins   | ``platform.admins``           | chosen by the caller |
| send_tenant_data_update   | ``tenant.{tenant}.notifications`` | ``tenant.data_update`` |
| send_security_alert       | ``platform.security``         | ``security.alert``  |
| track_user_activity       | ``tenant.{tenant}.admins``    | ``user.activity``   |

``track_user_activity`` calls ``AdminService.TrackActivity``; the server
checks the report and publishes it there itself.
"""

from __future__ import annotations

import re
from typing import Final

from roomcast_client.errors import InvalidArgument

__all__ = [
    "PLATFORM_ADMINS",
    "PLATFORM_SECURITY",
    "SECURITY_ALERT",
    "TENANT_DATA_UPDATE",
    "USER_ACTIVITY",
    "USER_NOTIFICATION",
    "tenant_admins",
    "tenant_notifications",
    "user_notifications",
]

PLATFORM_ADMINS: Final = "platform.admins"
PLATFORM_SECURITY: Final = "platform.security"
USER_NOTIFICATION: Final = "user.notification"
TENANT_DATA_UPDATE: Final = "tenant.data_update"
SECURITY_ALERT: Final = "security.alert"
USER_ACTIVITY: Final = "user.activity"

# The server's grammar for `sub` and `tenant_id` (docs/grpc.md, "Claims"). An
# id is placed into a room name as one segment, so a "." in it would name
# another room; refuse it here rather than publish somewhere unexpected.
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _segment(field: str, value: str) -> str:
    if not _ID.fullmatch(value):
        raise InvalidArgument(f"{field}: {value!r} is not an id (1-64 of A-Z a-z 0-9 _ -)")
    return value


def user_notifications(user_id: str) -> str:
    """The room of a user's notifications, ``user.{user_id}.notifications``.

    Raises:
        InvalidArgument: ``user_id`` is not a valid id.
    """
    return f"user.{_segment('user_id', user_id)}.notifications"


def tenant_notifications(tenant_id: str) -> str:
    """The room every member of a tenant follows, ``tenant.{tenant_id}.notifications``.

    Raises:
        InvalidArgument: ``tenant_id`` is not a valid id.
    """
    return f"tenant.{_segment('tenant_id', tenant_id)}.notifications"


def tenant_admins(tenant_id: str) -> str:
    """The room of a tenant's admins, ``tenant.{tenant_id}.admins``, where activity lands.

    Raises:
        InvalidArgument: ``tenant_id`` is not a valid id.
    """
    return f"tenant.{_segment('tenant_id', tenant_id)}.admins"
