"""A real Prometheus process for the tests: scrapes one /metrics target every second (shared by the scrape
and the Grafana-dashboard tests)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_prometheus(
    prometheus_bin: str, tmp_path: Path, target_port: int, *, job: str, token: str | None = None
) -> Iterator[str]:
    """Prometheus scraping 127.0.0.1:``target_port`` every second as ``job`` (with ``token`` as bearer
    credentials when given); yields its API base URL and stops it on exit."""
    port = free_port()
    auth = f"    authorization:\n      credentials: {token}\n" if token else ""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: {job}\n{auth}"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    )
    with (tmp_path / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
