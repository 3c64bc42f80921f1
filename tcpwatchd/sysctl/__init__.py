"""The TCP sysctl policy: audit the keepalive (and related) sysctls against the config, optionally set them.

Layers, one way: `catalog` (what we know of each sysctl) → `policy` (pure validation) → `procsys` (the only
I/O on /proc/sys) → `audit` (a frozen `SysctlReport`) → `enforce` (`SysctlPolicy`, the daemon's entry point)
→ `metrics` / `cli` (renderers). docs/sysctl.md explains the network-namespace question and the derived times.
"""
