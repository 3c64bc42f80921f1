"""The exporter-toolkit web config: validated whole, one clear reason per field; certificates reloaded."""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path

import bcrypt
import pytest

from tcpwatchd.config import ConfigError
from tcpwatchd.web.endpoint import WebSetup
from tcpwatchd.web.tls import TLSContexts
from tcpwatchd.web.webconfig import load_web_config, parse_web_config
from tests.support.tlscerts import Certs, make_certs

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()
HTPASSWD_2Y = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"  # the toolkit's docs example


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def parse(text: str, base: Path = Path("/etc/tcpwatchd")) -> object:
    return parse_web_config(text, "web.yml", base)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse(text)
    return e.value.problems


def test_empty_file_is_plain_http_without_auth() -> None:
    cfg = parse_web_config("", "web.yml", Path("/x"))
    assert not cfg.tls_server_config.enabled
    assert cfg.basic_auth_users == {}


def test_toolkit_example_parses_and_resolves_relative_paths() -> None:
    cfg = parse_web_config(
        "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: /abs/server.key\n"
        "  min_version: TLS13\n"
        "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        f"basic_auth_users:\n  prometheus: {HTPASSWD_2Y}\n",
        "web.yml",
        Path("/etc/tcpwatchd"),
    )
    t = cfg.tls_server_config
    assert (t.cert_file, t.key_file, t.min_version) == (
        "/etc/tcpwatchd/tls/server.crt",
        "/abs/server.key",
        "TLS13",
    )
    assert cfg.http_server_config.headers.pairs() == (
        ("X-Frame-Options", "deny"),
        ("Strict-Transport-Security", "max-age=31536000"),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config:\n  cert_file: a.pem\n", "tls_server_config: key_file (or key) is required"),
        ("tls_server_config:\n  key_file: a.key\n", "tls_server_config: cert_file (or cert) is required"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "needs client_ca_file",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca\n",
            "client_ca_file is set but client_auth_type does not verify",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n",
            "client_auth_type",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
            "authenticates nobody",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n",
            "min_version TLS13 is above max_version TLS12",
        ),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: SSL3\n", "min_version"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [X]\n", "not supported"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  certfile: c\n", "certfile: unknown key"),
        (
            "tls_server_config:\n  cert_file: true\n  key_file: b\n",
            "cert_file: Input should be a valid string",
        ),
        ("basic_auth_users:\n  alice: hunter2\n", "not a bcrypt hash"),
        (f"basic_auth_users:\n  'a:b': {HASH}\n", "cannot contain ':'"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "must be one of deny, sameorigin"),
        ("http_server_config:\n  headers:\n    X-Powered-By: me\n", "unknown key"),
        ("rate_limit:\n  interval: 1s\n  burst: 5\n", "rate_limit: not supported"),
        ("- a\n- b\n", "<root>: must be a mapping"),
        ("tls_server_config: [\n", "YAML"),
        ("a: " + "[" * 100_000 + "\n", "YAML"),
    ],
)
def test_refused_with_the_field_and_reason(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


def test_passwords_are_never_echoed() -> None:
    assert not any("hunter2" in p for p in problems("basic_auth_users:\n  alice: hunter2\n"))


def test_load_refuses_special_files(tmp_path: Path) -> None:
    fifo = tmp_path / "web.yml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_web_config(fifo)


def test_setup_builds_tls_and_auth(tmp_path: Path, certs: Certs) -> None:
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n"
        f"basic_auth_users:\n  prometheus: {HASH}\n"
    )
    setup = WebSetup.load(str(web))
    assert setup.tls is not None and setup.site.auth is not None
    assert setup.tls.current().verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("broken", ["key_is_cert", "missing", "fifo"])
def test_unloadable_certificates_are_refused_at_load(tmp_path: Path, certs: Certs, broken: str) -> None:
    key = {"key_is_cert": certs.server_cert, "missing": tmp_path / "nope.key", "fifo": tmp_path / "k.fifo"}[
        broken
    ]
    if broken == "fifo":
        os.mkfifo(key)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {key}\n")
    with pytest.raises(ConfigError, match="tls_server_config"):
        WebSetup.load(str(web))


def test_rotated_certificate_is_picked_up_and_a_broken_one_ignored(tmp_path: Path, certs: Certs) -> None:
    cert, key = tmp_path / "s.pem", tmp_path / "s.key"
    shutil.copy(certs.server_cert, cert)
    shutil.copy(certs.server_key, key)
    now = [0.0]
    cfg = parse_web_config(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n", "w", tmp_path)
    contexts = TLSContexts(cfg.tls_server_config, check_seconds=5, clock=lambda: now[0])
    first = contexts.current()
    cert.write_text("garbage")  # a half-written rotation
    now[0] = 6
    assert contexts.current() is first  # broken files: keep serving the old pair
    shutil.copy(certs.client_cert, cert)  # a new valid pair (the client one will do)
    shutil.copy(certs.client_key, key)
    now[0] = 8
    assert contexts.current() is first  # checked at most every 5 s
    now[0] = 12
    assert contexts.current() is not first
