"""A throwaway CA, server and client certificate made with the `openssl` CLI, for TLS tests."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing we trust
    rogue_cert: Path  # a client certificate signed by other_ca
    rogue_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _new_key(key: Path, out: Path, name: str, *extra: str) -> None:
    """`openssl req` with a fresh P-256 key in `key`, subject CN=`name`: a CSR in `out`, or with `-x509`
    among `extra` a self-signed certificate."""
    _openssl(
        "req", *extra, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(out), "-subj", f"/CN={name}",
    )  # fmt: skip


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    _new_key(key, cert, name, "-x509", "-days", "2")
    return cert, key


def _leaf(d: Path, name: str, ca: tuple[Path, Path], san: str, usage: str) -> tuple[Path, Path]:
    key, csr, cert, ext = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    _new_key(key, csr, name)
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca[0]),
        "-CAkey",
        str(ca[1]),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return cert, key


def make_certs(d: Path) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI")
    d.mkdir(parents=True, exist_ok=True)
    ca = _ca(d, "ca")
    other = _ca(d, "other-ca")
    server = _leaf(d, "server", ca, "IP:127.0.0.1,DNS:localhost", "serverAuth")
    client = _leaf(d, "client", ca, "DNS:prometheus.example", "clientAuth")
    rogue = _leaf(d, "rogue", other, "DNS:prometheus.example", "clientAuth")
    return Certs(ca[0], *server, *client, other[0], *rogue)
