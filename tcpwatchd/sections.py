"""The base of every config section: strict, frozen, unknown keys refused.

It lives apart from config.py because detectors declare their own `[detect.<name>]` section (a detector is
one file) and config.py gathers those sections from the detector registry: both import this module, and
neither imports the other's internals.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config table: a typo is an error ("unknown key"), never a silently ignored setting.

    Strict: a bool is never an int or a float (`port = true` would listen on port 1), a string is never a
    number. A TOML int is still accepted for a float field (pydantic's strict float takes an int)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DetectorSettings(Section):
    """What every `[detect.<name>]` section has: `enabled` (a detector that is off by default says
    `enabled: bool = False` in its own section)."""

    enabled: bool = True


class DetectSections(Section):
    """The `[detect]` table: one field per registered detector, added by config.py from the registry.

    Read a detector's section with its spec (`SPEC.settings_in(cfg.detect)`), which is typed."""
