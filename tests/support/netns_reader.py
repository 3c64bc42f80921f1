"""Runs NamespaceSet in a process of its own (e.g. without CAP_SYS_ADMIN) and prints, for the namespace whose
inode is argv[1]: its mode, its sockets' states and the notes, as JSON."""

from __future__ import annotations

import json
import sys
from collections import Counter

from tcpwatchd.sources.nsdiag import NamespaceSet

wanted = int(sys.argv[1])
namespaces = NamespaceSet()
try:
    watched = [ns for ns in namespaces.refresh() if ns.key.ino == wanted]
    result = namespaces.dump(watched[0])
    states = Counter(s.state.name for s in result.sockets)
    print(
        json.dumps(
            {"mode": watched[0].mode, "source": result.source, "states": states, "notes": result.notes}
        )
    )
finally:
    namespaces.close()
