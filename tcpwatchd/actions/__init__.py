"""Actions: what tcpwatchd changes on the host after a poll (today: sysctls of other network namespaces,
when the config opts them in; the own namespace's enforce is tcpwatchd/sysctl/enforce.py)."""
