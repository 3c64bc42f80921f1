"""What the operator is looking at, and how each key changes it: pure, so every key is unit-tested.

Keys arrive as names ('up', 'down', 'pgup', 'pgdn', 'home', 'end', 'enter', 'esc', 'backspace', 'tab',
'left', 'right') or as the typed character.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tcpwatchd.top.model import SortKey, glob_escape

Key = tuple[str, str, str, str]
DETAIL_PER_PAGE = 100
MAX_FILTER = 200


class View(enum.Enum):
    LIST = "list"
    DETAIL = "detail"


class Action(enum.Enum):
    NONE = "none"
    REFETCH = "refetch"  # the query changed: fetch now rather than at the next poll
    QUIT = "quit"


@dataclass(frozen=True, slots=True)
class Context:
    """What a key needs to know about the screen: the rows shown, how many fit, the kinds to cycle."""

    rows: Sequence[Key] = ()
    page_rows: int = 10
    kinds: Sequence[str] = ()
    has_pods: bool = False
    detail_lines: int = 0
    detail_pages: int = 1


@dataclass(frozen=True, slots=True)
class State:
    view: View = View.LIST
    pods: bool = False
    sort: SortKey = SortKey.TROUBLE
    name_filter: str = ""
    editing: bool = False
    filter_before: str = ""
    kind: str = ""
    selected: Key | None = None
    target: Key | None = None  # the row opened in DETAIL
    page: int = 1  # server page of the target's findings
    scroll: int = 0  # first finding line shown in DETAIL


def selected_index(state: State, rows: Sequence[Key]) -> int:
    """The selection follows its row across re-sorts; a row that left selects the first one."""
    if state.selected is not None and state.selected in rows:
        return list(rows).index(state.selected)
    return 0


def handle_key(state: State, key: str, ctx: Context) -> tuple[State, Action]:
    """The new state after `key`, and whether to quit or fetch now.

    >>> handle_key(State(), "q", Context())[1]
    <Action.QUIT: 'quit'>
    """
    if state.editing:
        return _edit(state, key)
    if key == "q":
        return state, Action.QUIT
    if state.view is View.DETAIL:
        return _detail(state, key, ctx)
    return _list(state, key, ctx)


def _edit(state: State, key: str) -> tuple[State, Action]:
    if key == "enter":
        return replace(state, editing=False), Action.NONE
    if key == "esc":
        return replace(state, editing=False, name_filter=state.filter_before), Action.NONE
    if key == "backspace":
        return replace(state, name_filter=state.name_filter[:-1]), Action.NONE
    if len(key) == 1 and key.isprintable() and len(state.name_filter) < MAX_FILTER:
        return replace(state, name_filter=state.name_filter + key), Action.NONE
    return state, Action.NONE


def _move(state: State, key: str, ctx: Context) -> State | None:
    if not ctx.rows:
        return None
    steps = {"up": -1, "k": -1, "down": 1, "j": 1, "pgup": -ctx.page_rows, "pgdn": ctx.page_rows}
    last = len(ctx.rows) - 1
    i = selected_index(state, ctx.rows)
    if key in steps:
        i = min(max(i + steps[key], 0), last)
    elif key in ("home", "g"):
        i = 0
    elif key in ("end", "G"):
        i = last
    else:
        return None
    return replace(state, selected=ctx.rows[i])


def _list(state: State, key: str, ctx: Context) -> tuple[State, Action]:
    moved = _move(state, key, ctx)
    if moved is not None:
        return moved, Action.NONE
    if key in ("enter", "right", "l") and ctx.rows:
        target = ctx.rows[selected_index(state, ctx.rows)]
        return replace(state, view=View.DETAIL, target=target, page=1, scroll=0), Action.REFETCH
    if key == "/":
        return replace(state, editing=True, filter_before=state.name_filter), Action.NONE
    if key == "K":
        kinds = ["", *ctx.kinds]
        nxt = kinds[(kinds.index(state.kind) + 1) % len(kinds)] if state.kind in kinds else ""
        return replace(state, kind=nxt), Action.REFETCH
    if key == "s":
        return replace(state, sort=state.sort.next()), Action.NONE
    if key in ("1", "2", "3", "4", "5"):
        return replace(state, sort=list(SortKey)[int(key) - 1]), Action.NONE
    if key in ("p", "tab") and (ctx.has_pods or state.pods):
        return replace(state, pods=not state.pods, selected=None), Action.NONE
    if key == "esc" and (state.name_filter or state.kind):
        return replace(state, name_filter="", kind=""), Action.REFETCH
    if key == "r":
        return state, Action.REFETCH
    return state, Action.NONE


def _detail(state: State, key: str, ctx: Context) -> tuple[State, Action]:
    if key in ("esc", "backspace", "left", "h"):
        return replace(state, view=View.LIST, target=None, page=1, scroll=0), Action.REFETCH
    visible = max(ctx.page_rows, 1)
    steps = {"up": -1, "k": -1, "down": 1, "j": 1, "pgup": -visible, "pgdn": visible, " ": visible}
    most = max(ctx.detail_lines - visible, 0)
    if key in steps:
        return replace(state, scroll=min(max(state.scroll + steps[key], 0), most)), Action.NONE
    if key in ("home", "g"):
        return replace(state, scroll=0), Action.NONE
    if key in ("end", "G"):
        return replace(state, scroll=most), Action.NONE
    if key in ("n", "]") and state.page < ctx.detail_pages:
        return replace(state, page=state.page + 1, scroll=0), Action.REFETCH
    if key in ("p", "[") and state.page > 1:
        return replace(state, page=state.page - 1, scroll=0), Action.REFETCH
    if key == "r":
        return state, Action.REFETCH
    return state, Action.NONE


def query(state: State) -> dict[str, str]:
    """The API query for what is on screen (docs/api.md): the list needs only the summaries."""
    q: dict[str, str] = {"kind": state.kind} if state.kind else {}
    if state.view is View.LIST or state.target is None:
        # `processes` and `pods` are not paged: one finding per page keeps the list's reads small.
        return {**q, "per_page": "1"}
    process, namespace, pod, _container = state.target
    for name, value in (("process", process), ("namespace", namespace), ("pod", pod)):
        if value:
            q[name] = glob_escape(value)
    return {**q, "page": str(state.page), "per_page": str(DETAIL_PER_PAGE)}
