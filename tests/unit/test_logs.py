"""Logging: journal fields and MESSAGE_IDs under systemd, one safe line per record on stderr."""

from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tcpwatchd.logs import (
    JournalFieldsHandler,
    PlainFormatter,
    PlainStderrHandler,
    logfmt_value,
    priority_of,
    setup_logging,
)
from tcpwatchd.outputs.announce import message_ids

REPO = Path(__file__).resolve().parents[2]
MESSAGE_IDS = message_ids()
FINDING_KINDS = (
    "close_wait",
    "phantom",
    "idle_suspect",
    "reconnect_storm",
    "keepalive_off",
    "stalled_receive",
    "unresponsive_peer",
    "sysctl_drift",
    "listen_saturated",
    "fd_exhaustion",
    "port_exhaustion",
)


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def _record(
    msg: str, fields: Mapping[str, object] | None = None, level: int = logging.WARNING
) -> logging.LogRecord:
    record = logging.LogRecord("tcpwatchd.findings", level, __file__, 1, msg, None, None, "announce")
    if fields is not None:
        record.tcpwatchd_fields = fields
    return record


def _sent(record: logging.LogRecord) -> dict[str, str]:
    sent: list[Mapping[str, str]] = []
    handler = JournalFieldsHandler(sender=sent.append)
    handler.handle(record)
    assert len(sent) == 1
    return dict(sent[0])


def test_every_finding_kind_has_its_own_message_id() -> None:
    assert set(MESSAGE_IDS) == set(FINDING_KINDS)
    assert len(set(MESSAGE_IDS.values())) == len(MESSAGE_IDS)
    for mid in MESSAGE_IDS.values():
        assert uuid.UUID(hex=mid).hex == mid  # 32 lowercase hex digits, as journalctl MESSAGE_ID= wants


@pytest.mark.parametrize("kind", FINDING_KINDS)
def test_journal_entry_carries_the_finding_fields_and_message_id(kind: str) -> None:
    fields = {
        "TCPWATCHD_FINDING": kind,
        "TCPWATCHD_PROCESS": "nginx",
        "TCPWATCHD_PID": 4242,
        "TCPWATCHD_PEER": "[2001:db8::1]:443",
        "TCPWATCHD_AGE_SECONDS": 301.5,
        "MESSAGE_ID": MESSAGE_IDS[kind],  # outputs/announce.py puts the kind's id in the fields
    }
    sent = _sent(_record(f"{kind} in nginx", fields))
    assert sent["MESSAGE"] == f"{kind} in nginx"
    assert sent["MESSAGE_ID"] == MESSAGE_IDS[kind]
    assert sent["SYSLOG_IDENTIFIER"] == "tcpwatchd"
    assert sent["PRIORITY"] == "4"
    assert sent["TCPWATCHD_FINDING"] == kind
    assert sent["TCPWATCHD_PID"] == "4242"
    assert sent["TCPWATCHD_PEER"] == "[2001:db8::1]:443"
    assert sent["TCPWATCHD_AGE_SECONDS"] == "301.5"


def test_plain_records_have_no_message_id_and_no_finding_fields() -> None:
    sent = _sent(_record("poll took 0.3 s", level=logging.INFO))
    assert "MESSAGE_ID" not in sent
    assert not [k for k in sent if k.startswith("TCPWATCHD_")]
    assert sent["PRIORITY"] == "6"


@pytest.mark.parametrize(
    ("key", "sent_as"),
    [
        ("tcpwatchd_socket", "TCPWATCHD_SOCKET"),  # case is normalised
        ("_PID", None),  # trusted fields are journald's own: never forged
        ("_SYSTEMD_UNIT", None),
        ("BAD-NAME", None),
        ("1ST", None),  # may not start with a digit
        ("MESSAGE_ID", None),  # only a finding kind sets it
        ("A" * 65, None),  # longer than journald accepts
        ("MESSAGE", None),  # cannot replace the message...
        ("PRIORITY", None),  # ...nor its priority
    ],
)
def test_field_names_journald_would_reject_or_trust_are_dropped(key: str, sent_as: str | None) -> None:
    sent = _sent(_record("m", {key: "forged"}))
    assert [k for k, v in sent.items() if v == "forged"] == ([sent_as] if sent_as else [])


def test_undecodable_bytes_in_a_value_still_reach_the_journal() -> None:
    hostile = b"ngi\xffnx\n".decode("utf-8", "surrogateescape")
    sent = _sent(_record("m", {"TCPWATCHD_PROCESS": hostile}))
    assert sent["TCPWATCHD_PROCESS"] == "ngi\\udcffnx\n"  # journald values may hold newlines
    sent["TCPWATCHD_PROCESS"].encode("utf-8")


def test_exception_text_is_sent() -> None:
    try:
        raise OSError(13, "Permission denied")
    except OSError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "scan failed", None, sys.exc_info())
    sent: list[Mapping[str, str]] = []
    handler = JournalFieldsHandler(sender=sent.append)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(record)
    assert "PermissionError" in sent[0]["EXCEPTION_TEXT"]
    assert sent[0]["PRIORITY"] == "3"


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.DEBUG, 7),
        (logging.INFO, 6),
        (logging.WARNING, 4),
        (logging.ERROR, 3),
        (logging.CRITICAL, 2),
        (25, 4),
    ],
)
def test_priority(level: int, priority: int) -> None:
    assert priority_of(level) == priority


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("nginx", "nginx"),
        ("", '""'),
        ("a b", '"a b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("x=1", '"x=1"'),
        ("C:\\dir", '"C:\\\\dir"'),
        ("ng\ninx", '"ng\\ninx"'),
        ("a\rb\x1b[31m", '"a\\rb\\x1b[31m"'),
        ("x\u2028y", '"x\\u2028y"'),
    ],
)
def test_logfmt_value(value: str, rendered: str) -> None:
    assert logfmt_value(value) == rendered


@pytest.mark.parametrize(
    "hostile",
    ["nginx\n2024-01-01 00:00:00,000 ERROR tcpwatchd: forged", "a\r\nb", "\x00\x7f", "x\u2028y"],
)
def test_stderr_line_cannot_be_split_by_a_hostile_name(hostile: str) -> None:
    record = _record("CLOSE_WAIT leak in %s", {"TCPWATCHD_PROCESS": hostile, "TCPWATCHD_PID": 7})
    record.args = (hostile,)
    line = PlainFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert " WARNING tcpwatchd.findings: CLOSE_WAIT leak in " in line
    assert line.endswith(" pid=7")


def test_stderr_line_appends_fields_without_prefix() -> None:
    fields = {"TCPWATCHD_FINDING": "phantom", "TCPWATCHD_PROCESS": "my app", "TCPWATCHD_PID": 42}
    line = PlainFormatter().format(_record("phantom connection", fields))
    assert line.endswith('tcpwatchd.findings: phantom connection finding=phantom process="my app" pid=42')


def test_setup_logging_is_idempotent_and_writes_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("debug")
    setup_logging("warning")
    ours = [
        h for h in logging.getLogger().handlers if isinstance(h, PlainStderrHandler | JournalFieldsHandler)
    ]
    assert len(ours) == 1
    log = logging.getLogger("tcpwatchd.test")
    log.info("hidden")
    log.warning("shown", extra={"tcpwatchd_fields": {"TCPWATCHD_FINDING": "close_wait"}})
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert err.count("\n") == 1
    assert err.rstrip("\n").endswith("WARNING tcpwatchd.test: shown finding=close_wait")


@pytest.mark.parametrize(
    ("matching", "handler_type"), [(True, JournalFieldsHandler), (False, PlainStderrHandler)]
)
def test_journal_only_when_stderr_is_the_announced_journal_stream(
    monkeypatch: pytest.MonkeyPatch, matching: bool, handler_type: type[logging.Handler]
) -> None:
    pytest.importorskip("systemd.journal")
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino if matching else st.st_ino + 1}")
    setup_logging()
    ours = [
        h for h in logging.getLogger().handlers if isinstance(h, PlainStderrHandler | JournalFieldsHandler)
    ]
    assert [type(h) for h in ours] == [handler_type]


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="verbose"):
        setup_logging("verbose")


# The real path: systemd-python's sendv() to /run/systemd/journal/socket. In a private mount namespace
# a tmpfs hides the host's /run, and the child binds its own datagram socket there and reads back what
# journald would have received (native protocol: systemd's docs/JOURNAL_NATIVE_PROTOCOL.md).
_CHILD = r"""
import json, logging, os, socket, sys
os.makedirs("/run/systemd/journal")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("/run/systemd/journal/socket")
sock.settimeout(10)
st = os.fstat(2)
os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
from tcpwatchd.logs import setup_logging
setup_logging()
logging.getLogger("tcpwatchd.findings").warning(
    "phantom connection in %s", "nginx",
    extra={"tcpwatchd_fields": {"TCPWATCHD_FINDING": "phantom", "TCPWATCHD_PROCESS": "ngi\nnx",
                                "MESSAGE_ID": "d72a45a215b448a891d2cf3e2409f4bf",
                                "TCPWATCHD_PID": 42, "TCPWATCHD_PEER": "127.0.0.1:5000"}})
sys.stdout.write(sock.recv(1 << 16).hex())
"""


def parse_native(datagram: bytes) -> dict[str, str]:
    """journald's native protocol: 'KEY=value\\n', or 'KEY\\n' + le64 length + value + '\\n'."""
    fields, pos = {}, 0
    while pos < len(datagram):
        eol = datagram.index(b"\n", pos)
        line = datagram[pos:eol]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            pos = eol + 1
        else:
            (size,) = struct.unpack_from("<Q", datagram, eol + 1)
            key, value = line, datagram[eol + 9 : eol + 9 + size]
            pos = eol + 9 + size + 1
        fields[key.decode()] = value.decode()
    return fields


@pytest.mark.integration
def test_fields_reach_a_real_journal_socket(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    pytest.importorskip("systemd.journal")
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    shell = f'mount -t tmpfs tcpwatchd-test /run && exec "$0" {script}'
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, sys.executable],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    fields = parse_native(bytes.fromhex(done.stdout))
    expected = {
        "MESSAGE": "phantom connection in nginx",
        "MESSAGE_ID": MESSAGE_IDS["phantom"],
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "tcpwatchd",
        "TCPWATCHD_FINDING": "phantom",
        "TCPWATCHD_PROCESS": "ngi\nnx",
        "TCPWATCHD_PID": "42",
        "TCPWATCHD_PEER": "127.0.0.1:5000",
    }
    assert {k: fields.get(k) for k in expected} == expected
