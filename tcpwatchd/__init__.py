"""tcpwatchd: watches the health of a host's TCP connections and exports it to Prometheus."""

__version__ = "0.1.0"
