"""Kernel numbers → model enums, shared by both socket parsers (procnet and sock_diag).

model.py owns TcpState, TimerKind and Family and numbers them as the kernel does; parsers look the raw
numbers up here (a dict lookup: the enum constructor is several times slower on the hot path), and a
number with no entry is a record the parser cannot represent.

>>> STATE_OF[10], TIMER_OF.get(9)
(<TcpState.LISTEN: 10>, None)
"""

from __future__ import annotations

from collections.abc import Mapping

from tcpwatchd.model import Family, TcpState, TimerKind

# Plain dicts typed read-only: a MappingProxyType's .get() costs twice a dict's, three times per socket.
FAMILY_OF: Mapping[int, Family] = {int(f): f for f in Family}
STATE_OF: Mapping[int, TcpState] = {int(s): s for s in TcpState}
TIMER_OF: Mapping[int, TimerKind] = {int(t): t for t in TimerKind}
