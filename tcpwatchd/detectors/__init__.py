"""The detectors: pure functions of the tracker's view and the config, registered by name.

Importing this package registers every detector (each module registers itself with `@register`).
"""

from tcpwatchd.detectors import (
    close_wait,
    keepalive_off,
    phantom,
    reconnect_storm,
    stalled_receive,
    unresponsive_peer,
)
from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Detector,
    Finding,
    Kind,
    Outcome,
    Registered,
    is_enabled,
    register,
    registered,
)

__all__ = [
    "Context",
    "Detail",
    "Detector",
    "Finding",
    "Kind",
    "Outcome",
    "Registered",
    "close_wait",
    "is_enabled",
    "keepalive_off",
    "phantom",
    "reconnect_storm",
    "register",
    "registered",
    "stalled_receive",
    "unresponsive_peer",
]
