"""Everything that consumes a poll's verdict, and nothing that produces one: the Prometheus collector and
its metric families (prometheus.py, detector_metrics.py, sysctl_metrics.py) and the journal announcer
(announce.py). The daemon and the CLI hand each finished `PollResult` here; nothing here does I/O on the
host or feeds back into a poll.
"""
