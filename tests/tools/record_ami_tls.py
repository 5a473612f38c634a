"""Record telephonyd's AMI logins over TLS against a lab Asterisk 22.10.1 (``tlsenable=yes``, 5039).

Not a test (pytest does not collect it): run by hand where the lab runs, as
``LAB_AMI_SECRET=... python -m tests.tools.record_ami_tls OUT_DIR [CA_FILE]``. For each login form
(``plain``, ``md5``) it runs the daemon's own `AMIClient` with ``ami.tls`` (verifying Asterisk's
certificate against CA_FILE, default the lab's self-signed ``/work/lab/etc/keys/ami.crt``), waits for
the login and the CoreSettings that follows, sends a Ping, and stops (Logoff). The plaintext inside
TLS is captured at the client, byte for byte, by wrapping the stream the client opens, and written
as ``ami_tls_<auth>.jsonl`` in the `tests.fakes.recording_proxy` line format (``Secret``/``Key``
values redacted) with the negotiated TLS version and cipher in the ``open`` record.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from telephonyd.ami.client import AMIClient  # noqa: E402
from telephonyd.config import AMIConfig  # noqa: E402

REDACT = re.compile(rb"^(Secret|Key): [^\r\n]*", re.M | re.I)


class _Recorder:
    def __init__(self, out: Path) -> None:
        self.file = out.open("w", encoding="utf-8")
        self.started = time.monotonic()

    def log(self, direction: str, data: bytes = b"", **extra: Any) -> None:
        if direction == "c2s":
            data = REDACT.sub(rb"\1: <redacted>", data)
        record = {"t": round(time.monotonic() - self.started, 6), "conn": 1, "dir": direction,
                  "data": data.decode("latin-1"), **extra}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


class _Writer:
    def __init__(self, writer: asyncio.StreamWriter, recorder: _Recorder) -> None:
        self._writer, self._recorder = writer, recorder

    def write(self, data: bytes) -> None:
        self._recorder.log("c2s", bytes(data))
        self._writer.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def recording_open_connection(recorder: _Recorder, real: Any) -> Any:
    async def open_connection(*args: Any, **kwargs: Any) -> tuple[asyncio.StreamReader, Any]:
        reader, writer = await real(*args, **kwargs)
        ssl_object = writer.get_extra_info("ssl_object")
        recorder.log("open", tls_version=ssl_object.version() if ssl_object else None,
                     cipher=ssl_object.cipher()[0] if ssl_object else None)
        copy = asyncio.StreamReader(limit=2**20)

        async def pump() -> None:
            while data := await reader.read(65536):
                recorder.log("s2c", data)
                copy.feed_data(data)
            recorder.log("close")
            copy.feed_eof()

        asyncio.get_running_loop().create_task(pump())
        return copy, _Writer(writer, recorder)

    return open_connection


async def record(auth: str, out: Path, ca_file: str, secret: str) -> None:
    config = AMIConfig(enabled=True, host="127.0.0.1", port=5039, username="telephonyd", secret=secret, auth=auth,
                       tls={"enabled": True, "ca_file": ca_file}, action_id_prefix=f"tls{auth}")
    recorder = _Recorder(out)
    with mock.patch.object(asyncio, "open_connection", recording_open_connection(recorder, asyncio.open_connection)):
        client = AMIClient(config)
        await client.start()
        task = asyncio.create_task(client.run())
        async with asyncio.timeout(15):
            while not (client.connected and client.asterisk_version):
                await asyncio.sleep(0.05)
        reply = await client.action({"Action": "Ping"})
        print(auth, client.asterisk_version, reply)
        await client.stop()
        await asyncio.wait_for(task, 10)
    recorder.file.close()


async def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    ca_file = sys.argv[2] if len(sys.argv) > 2 else "/work/lab/etc/keys/ami.crt"
    for auth in ("plain", "md5"):
        await record(auth, out / f"ami_tls_{auth}.jsonl", ca_file, os.environ["LAB_AMI_SECRET"])


if __name__ == "__main__":
    asyncio.run(main())
