#!/usr/bin/env python3
"""Ameyo callbacks over HTTPS vs plain HTTP, in the same run (bench/callbacks_load.py's relay and clients).

The relay (HTTPServer + AmeyoService + outbox on SQLite -> fake TopS.II in its own process) is started
twice per round, once plain and once with ``http.tls`` (a certificate generated at run time with
``openssl``: EC P-256; Python's server defaults, so TLS 1.3 with AES-256-GCM on loopback), and the
same client process load runs against each, in alternating order over ``--rounds`` rounds. Two
client shapes: keep-alive (``--concurrency`` connections reused: the cost of TLS record encryption)
and a new connection per callback (``force_close``: the cost of a full handshake each time, the worst
case of a dialer that does not reuse connections). Each callback is committed (callback, decision,
outbox row) before the answer, as in the daemon. Prints callbacks/s and latency for each and the
HTTPS/HTTP ratio; nothing is asserted.

  .venv/bin/python bench/https_callbacks.py --callbacks 4000 --concurrency 32 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import callbacks_load as load  # noqa: E402


async def one(tops_url: str, args: argparse.Namespace, first_call: int, http_config: dict[str, Any] | None,
              extra: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as db_dir:
        base_url, *relay = await load.start_relay(db_dir, tops_url, http_config)
        try:
            warm = argparse.Namespace(**{**vars(args), "calls": 200, "rate": 0, "clients": 1})
            await load.run_clients(base_url, warm, first_call + 5_000_000, extra)
            result = await load.run_clients(base_url, args, first_call, extra)
            result["drained"] = await load.drained(relay[1], timeout_s=120)
            return result
        finally:
            await load.stop_relay(*relay)


async def main(args: argparse.Namespace) -> None:
    from tests.tls_certs import make_pki

    fake = await asyncio.create_subprocess_exec(sys.executable, load.__file__, "--fake-tops",
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert fake.stdout is not None and fake.stdin is not None
    tops_url = (await fake.stdout.readline()).decode().strip()
    rows: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as pki_dir:
        pki = make_pki(Path(pki_dir))
        tls = {"tls": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}}
        call = 0
        for round_no in range(args.rounds):
            for shape, extra in (("keep-alive", {}), ("connection per callback", {"force_close": True})):
                order = [("http", None), ("https", tls)]
                if round_no % 2:
                    order.reverse()
                for scheme, http_config in order:
                    spec = {**extra, **({"ca_file": str(pki.ca_cert)} if http_config else {})}
                    result = await one(tops_url, args, call, http_config, spec)
                    call += args.calls + 10_000_000
                    rows.setdefault(f"{shape} {scheme}", []).append(result)
    fake.stdin.write(b"quit\n")
    await asyncio.wait_for(fake.wait(), 10)

    def best(key: str) -> dict[str, Any]:
        return max(rows[key], key=lambda r: r["per_s"])

    summary: dict[str, Any] = {"cpus": os.cpu_count(), "callbacks_per_run": args.calls, "concurrency": args.concurrency,
                               "rounds": args.rounds, "runs": rows, "best": {}}
    for shape in ("keep-alive", "connection per callback"):
        plain, https = best(f"{shape} http"), best(f"{shape} https")
        summary["best"][shape] = {"http_per_s": plain["per_s"], "https_per_s": https["per_s"],
                                  "https_over_http": round(https["per_s"] / plain["per_s"], 3),
                                  "http_p99_ms": plain["p99_ms"], "https_p99_ms": https["p99_ms"],
                                  "errors": plain["errors"] + https["errors"]}
    print(json.dumps(summary, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callbacks", dest="calls", type=int, default=4000, help="calls per run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (the order alternates)")
    args = parser.parse_args()
    args.rate = 0
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
