"""Prometheus metrics for the operator (`racepub run --metrics-port`)."""

from __future__ import annotations

import socket
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ..errors import RacepubError, UsageError, listening


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cycles = Counter("racepub_cycles", "Publish cycles that completed", registry=r)
        self.failures = Counter(
            "racepub_cycle_failures", "Publish cycles that failed, by stage", ["stage"], registry=r
        )
        self.dropped = Counter(
            "racepub_points_dropped", "Points dropped, by reason", ["reason"], registry=r
        )
        self.points = Counter("racepub_points_accepted", "Points accepted", registry=r)
        self.duration = Histogram(
            "racepub_cycle_seconds",
            "Duration of a publish cycle",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.seq = Gauge("racepub_seq", "seq of the snapshot last published", registry=r)
        self.standby = Gauge(
            "racepub_standby", "1 while another process holds the race", registry=r
        )
        self.bytes = Counter("racepub_bytes_written", "Bytes written to the sink", registry=r)
        self._last_ok: float | None = None
        since = Gauge(
            "racepub_seconds_since_last_publish",
            "Seconds since the last successful publish (what spectators lag by)",
            registry=r,
        )
        since.set_function(lambda: time.time() - self._last_ok if self._last_ok else float("nan"))

    def published(
        self, seq: int, seconds: float, accepted: int, reasons: dict[str, int], written: int
    ) -> None:
        self.cycles.inc()
        self.duration.observe(seconds)
        self.seq.set(seq)
        self.points.inc(accepted)
        self.bytes.inc(written)
        for reason, n in reasons.items():
            self.dropped.labels(reason).inc(n)
        self._last_ok = time.time()

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        try:
            with listening(host, port):
                start_http_server(port, addr=host, registry=self.registry)
        except socket.gaierror as e:
            # No such address (a typo, 999.1.1.1): the user's to fix, not a
            # restart's. The name service down is worth a retry.
            if e.errno in (socket.EAI_NONAME, socket.EAI_FAMILY, socket.EAI_SERVICE):
                raise UsageError(
                    f"racepub run: --metrics-host {host!r}: no such address to listen on "
                    f"({e.strerror}): expected an IP address of this machine or its name"
                ) from None
            raise RacepubError(f"cannot listen on {host}:{port}: {e.strerror}") from None
