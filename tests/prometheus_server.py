"""A real Prometheus server on loopback for integration tests (Debian package `prometheus`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka_broker import free_port

BINARY = "prometheus"


class PrometheusServer:
    """Scrapes `targets` every second as job `job` and evaluates `rule_files` every second."""

    def __init__(self, directory: Path, targets: list[str], rule_files: list[Path],
                 job: str = "detector") -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            raise RuntimeError("integration tests need Prometheus: apt-get install prometheus "
                               "(or run scripts/install-test-tools as root)")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
        }
        self.config = directory / "prometheus.yml"
        self.config.write_text(json.dumps(config))  # JSON is YAML
        self.log = directory / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expression)["result"]
        return result

    def firing(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return [alert for alert in alerts if alert["state"] == "firing"]

    def wait_for(self, what: str, check: Any, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                             f"prometheus log: {self.log.read_text()[-1500:]}")


@contextmanager
def running_prometheus(directory: Path, target: str,
                       rule_files: list[Path]) -> Iterator[PrometheusServer]:
    """A started server in `directory` (created) scraping `target`, stopped on exit."""
    directory.mkdir()
    server = PrometheusServer(directory, [target], rule_files)
    try:
        server.start()
        yield server
    finally:
        server.stop()
