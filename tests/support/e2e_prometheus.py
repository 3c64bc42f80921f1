"""A real Prometheus server inside a test's network namespace, and a small client for its HTTP API.

Prometheus listens on 127.0.0.1 in the namespace and scrapes only targets there; it has no Alertmanager
and no remote write, so nothing it does leaves the namespace. Alerts are read from `/api/v1/alerts`,
which lists pending and firing alerts without an Alertmanager.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.netns import NetNS, wait_until

LISTEN = "127.0.0.1:9090"
JOB = "tcpwatchd"  # the job the shipped rules select on (`up{job="tcpwatchd"}`)

# Runs inside the namespace: GETs each (path, params) from Prometheus, prints the JSON answers as a list.
_FETCH = """
import json, sys, urllib.error, urllib.parse, urllib.request
out = []
for path, params in json.loads(sys.argv[2]):
    url = sys.argv[1] + path + "?" + urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            out.append(json.load(answer))
    except urllib.error.HTTPError as e:  # a refused query explains itself in JSON; a server starting, not
        body = e.read().decode(errors="replace")
        try:
            out.append(json.loads(body))
        except ValueError:
            out.append({"status": "http %d" % e.code, "error": body})
    except OSError as e:
        out.append({"status": "unreachable", "error": str(e)})
print(json.dumps(out))
"""


def short_for_rules(text: str, for_: str) -> str:
    """The rules file with every alert's `for:` set to `for_`, everything else as shipped."""
    doc = yaml.safe_load(text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = for_
    return str(yaml.safe_dump(doc, sort_keys=False))


@dataclass(frozen=True, slots=True)
class ScrapeAuth:
    """How the job scrapes: over HTTPS, trusting `ca_file`, with basic auth (the password in a file, as
    a production scrape config keeps it)."""

    ca_file: Path
    username: str
    password_file: Path


def prometheus_config(
    targets: list[str], rules: Path, interval: str = "1s", auth: ScrapeAuth | None = None
) -> str:
    job: dict[str, Any] = {"job_name": JOB, "static_configs": [{"targets": targets}]}
    if auth is not None:
        job["scheme"] = "https"
        job["tls_config"] = {"ca_file": str(auth.ca_file)}
        job["basic_auth"] = {"username": auth.username, "password_file": str(auth.password_file)}
    config = {
        # scrape_timeout may not exceed the interval, and its default (10s) would.
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": [job],
    }
    return str(yaml.safe_dump(config, sort_keys=False))


def spawn_logged(
    ns: NetNS, argv: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start a chatty child in `ns` with its output in a file (a pipe nobody reads would fill and block it).

    It joins `ns.children`, so closing the namespace kills it by its pid.
    """
    with log.open("w", encoding="utf-8") as out:
        child = subprocess.Popen(
            ns.cmd(*argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
    ns.children.append(child)
    return child


def start_prometheus(
    ns: NetNS, binary: str, workdir: Path, targets: list[str], rules: Path, auth: ScrapeAuth | None = None
) -> Path:
    """Start Prometheus in `ns` with a fresh data dir under `workdir`; returns its log file."""
    config = workdir / "prometheus.yml"
    config.write_text(prometheus_config(targets, rules, auth=auth), encoding="utf-8")
    log = workdir / "prometheus.log"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={LISTEN}",
    ]
    spawn_logged(ns, argv, log)
    return log


@dataclass(frozen=True, slots=True)
class Series:
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    state: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


class QueryError(AssertionError):
    """Prometheus refused a query (bad PromQL) or could not be reached."""


class PrometheusAPI:
    """The HTTP API of the Prometheus in `ns`, queried from inside the namespace."""

    def __init__(self, ns: NetNS) -> None:
        self.ns = ns

    def get_many(self, requests: list[tuple[str, dict[str, str]]]) -> list[dict[str, Any]]:
        done = self.ns.run(sys.executable, "-c", _FETCH, f"http://{LISTEN}", json.dumps(requests), timeout=60)
        answers: list[dict[str, Any]] = json.loads(done.stdout)
        return answers

    def get(self, path: str, **params: str) -> Any:
        (answer,) = self.get_many([(path, params)])
        if answer.get("status") != "success":
            raise QueryError(f"{path} {params}: {answer}")
        return answer["data"]

    def query(self, expr: str) -> list[Series]:
        """An instant query now; vectors and scalars alike come back as series."""
        data = self.get("/api/v1/query", query=expr)
        if data["resultType"] == "scalar":
            return [Series({}, float(data["result"][1]))]
        return [Series(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_range(self, expr: str, seconds: float, step: str = "1s") -> list[Mapping[str, str]]:
        """The series a range query over the last `seconds` returns (as a time series panel asks)."""
        now = time.time()
        data = self.get("/api/v1/query_range", query=expr, start=str(now - seconds), end=str(now), step=step)
        return [r["metric"] for r in data["result"]]

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self.get(f"/api/v1/label/{label}/values", **{"match[]": match})
        return values

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (scrapeUrl, health, lastError, labels)."""
        active: list[dict[str, Any]] = self.get("/api/v1/targets", state="active")["activeTargets"]
        return active

    def alerts(self) -> list[Alert]:
        return [
            Alert(a["labels"]["alertname"], a["state"], a["labels"], a["annotations"])
            for a in self.get("/api/v1/alerts")["alerts"]
        ]

    def ready(self) -> bool:
        (answer,) = self.get_many([("/api/v1/status/runtimeinfo", {})])
        return answer.get("status") == "success"

    def wait_scraping(self, timeout: float = 30) -> None:
        """Until the server answers and has scraped the job's target successfully."""
        wait_until(self.ready, timeout=timeout, interval=0.2, what="Prometheus to answer")
        up = f'up{{job="{JOB}"}} == 1'
        wait_until(lambda: bool(self.query(up)), timeout=timeout, interval=0.2, what="a successful scrape")
