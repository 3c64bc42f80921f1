"""Which sockets one detector run may judge: the rows of the poll's table, and the openings it remembers.

The report runs a detector once per settings group (defaults, and each `[[override]]` that changes it)
and leaves the `[ignore]` sockets out of every run (tcpwatchd/rules.py builds the scopes). A detector
honours its scope through the shared helpers in detectors/base.py (`judged_rows`, `mass_outcome`,
`judges_opening`), so a detector module never reads the rules itself. The state counts never see a scope.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress

from tcpwatchd.model import Owner

# (owner or None, local port, remote address) -> judged: for openings, which may have closed since.
OpeningTest = Callable[[Owner | None, int, str], bool]


@dataclass(frozen=True, slots=True)
class Scope:
    """`rows[i]` is 1 when row i of the snapshot's table is judged in this run, 0 when it is left out.

    >>> Scope(bytes([1, 0, 1]), lambda owner, port, remote: True).judged([0, 1, 2])
    [0, 2]
    """

    rows: bytes
    opening: OpeningTest

    def judged(self, rows: Sequence[int]) -> list[int]:
        """The rows of `rows` this run judges, in order (selected in C: rows may be 100k long)."""
        return list(compress(rows, map(self.rows.__getitem__, rows)))
