#!/usr/bin/env python3
"""Live check against the lab Asterisk (app_queue loaded): queue pause, DND through a Custom: device
state and PRESENCE_STATE; how long /api/ami/extensions, the WebSocket, Socket.IO and MQTT take to
follow each change. Not a test: it needs the lab (AMI on 127.0.0.1:5038, secret in
TELEPHONYD_LAB_AMI_SECRET) and Mosquitto on 127.0.0.1:1883.

Uses one endpoint (default 1013): registers it (lab.sh phone EXT answer), adds PJSIP/EXT to queue
``sales`` as a dynamic member, then QueuePause/unpause, DEVICE_STATE(Custom:DND<EXT>)=BUSY/NOT_INUSE,
PRESENCE_STATE(CustomPresence:<EXT>)=dnd/available; afterwards removes the member, puts the custom
state and presence back and unregisters. Prints one JSON line per step with each channel's delay (s).

  PYTHONPATH=$PWD TELEPHONYD_LAB_AMI_SECRET=... python tests/tools/lab_availability.py --ext 1013 \
      --record tests/fixtures/asterisk-22.10.1/conformance/availability_ami_dialogue.jsonl

``--record``: the daemon's AMI connection goes through tests/fakes/recording_proxy.py (secrets
redacted) and its dialogue is written there, for tests/component/test_availability_replay.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import socketio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fakes.recording_proxy import RecordingProxy  # noqa: E402
from tests.system.daemon import Daemon  # noqa: E402

LAB = "/work/lab/lab.sh"


class AMI:
    """A raw AMI session for the driver's own actions (not telephonyd's client)."""

    async def open(self, secret: str) -> None:
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", 5038), 5)
        await asyncio.wait_for(self.reader.readline(), 5)
        await self.send({"Action": "Login", "Username": "telephonyd", "Secret": secret, "Events": "off"})

    async def send(self, fields: dict[str, str]) -> str:
        aid = uuid.uuid4().hex[:8]
        data = "".join(f"{k}: {v}\r\n" for k, v in {**fields, "ActionID": aid}.items()) + "\r\n"
        self.writer.write(data.encode())
        await self.writer.drain()
        while True:
            block = (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)).decode()
            if f"ActionID: {aid}" in block:
                return block


async def main(args: argparse.Namespace) -> None:
    ext, secret = args.ext, os.environ["TELEPHONYD_LAB_AMI_SECRET"]
    base_topic = f"labcheck{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="lab-availability-"))
    proxy = None
    ami_port = 5038
    if args.record:
        proxy = await RecordingProxy("127.0.0.1", 5038, Path(args.record)).start()
        ami_port = proxy.port
    daemon = Daemon(work, {
        "node_id": "lab1",
        "ami": {"enabled": True, "host": "127.0.0.1", "port": ami_port, "username": "telephonyd", "auth": "plain"},
        "presence": {"endpoint_pattern": ext},
        "mqtt": {"enabled": True, "url": "mqtt://127.0.0.1:1883", "base_topic": base_topic},
    }, env={"TELEPHONYD_AMI_SECRET": secret})
    seen: dict[str, list[tuple[float, str]]] = {"ws": [], "socketio": [], "mqtt": []}
    subprocess.run([LAB, "phone", ext, "answer"], check=True, capture_output=True, timeout=60)
    ami = AMI()
    await ami.open(secret)
    await asyncio.get_running_loop().run_in_executor(None, daemon.start)
    sio = socketio.AsyncClient(reconnection=False)
    sio.on("extension:availability_changed",
           lambda d: seen["socketio"].append((time.monotonic(), d["state"])) if d["extension"] == ext else None)
    tasks: list[asyncio.Task[Any]] = []
    try:
        async with aiohttp.ClientSession(headers=daemon.headers) as http:
            async def ws_reader() -> None:
                async with http.ws_connect(daemon.base_url + "/ws/agents") as ws:
                    async for message in ws:
                        body = json.loads(message.data)
                        if body.get("type") == "agent:status" and body.get("endpoint") == ext:
                            seen["ws"].append((time.monotonic(), body["state"]))

            async def mqtt_reader() -> None:
                async with aiomqtt.Client("127.0.0.1", 1883) as client:
                    await client.subscribe(f"{base_topic}/lab1/agents/{ext}")
                    async for message in client.messages:
                        if message.payload:
                            seen["mqtt"].append((time.monotonic(), json.loads(message.payload)["state"]))

            tasks = [asyncio.create_task(ws_reader()), asyncio.create_task(mqtt_reader())]
            await sio.connect(daemon.base_url, auth={"token": daemon.headers["Authorization"].split()[1]},
                              transports=["websocket"], wait_timeout=5)

            async def api_state() -> str | None:
                async with http.get(daemon.base_url + "/api/ami/extensions?shape=dashboard") as resp:
                    entry = (await resp.json()).get(ext)
                    return entry["status"] if entry else None

            async def step(name: str, fields: dict[str, str], state: str, api_text: str) -> None:
                marks = {k: len(v) for k, v in seen.items()}
                started = time.monotonic()
                reply = await ami.send(fields)
                delays: dict[str, Any] = {}
                deadline = started + 5
                while time.monotonic() < deadline and len(delays) < 4:
                    if "api" not in delays and await api_state() == api_text:
                        delays["api"] = round(time.monotonic() - started, 3)
                    for channel, events in seen.items():
                        hit = next((t for t, s in events[marks[channel]:] if s == state), None)
                        if channel not in delays and hit is not None:
                            delays[channel] = round(hit - started, 3)
                    await asyncio.sleep(0.01)
                print(json.dumps({"step": name, "want": state, "reply": [ln for ln in reply.split("\r\n") if ln.startswith(("Response", "Message"))],
                                  "delays_s": delays, "all_within_1s": len(delays) == 4 and max(delays.values()) <= 1.0}),
                      flush=True)

            await daemon.wait_status(lambda s: s["components"]["presence"]["state"] == "seeded", 30)
            for _ in range(200):
                if await api_state() == "Available":
                    break
                await asyncio.sleep(0.05)
            await ami.send({"Action": "QueueAdd", "Queue": "sales", "Interface": f"PJSIP/{ext}",
                            "MemberName": f"Agent {ext}"})
            await step("QueuePause", {"Action": "QueuePause", "Interface": f"PJSIP/{ext}", "Paused": "true",
                                      "Reason": "Lab break"}, "paused", "Paused")
            await step("QueueUnpause", {"Action": "QueuePause", "Interface": f"PJSIP/{ext}", "Paused": "false"},
                       "available", "Available")
            await step("Custom DND BUSY", {"Action": "Setvar", "Variable": f"DEVICE_STATE(Custom:DND{ext})",
                                           "Value": "BUSY"}, "dnd", "DND")
            await step("Custom DND NOT_INUSE", {"Action": "Setvar", "Variable": f"DEVICE_STATE(Custom:DND{ext})",
                                                "Value": "NOT_INUSE"}, "available", "Available")
            await step("PRESENCE_STATE dnd", {"Action": "Setvar", "Variable": f"PRESENCE_STATE(CustomPresence:{ext})",
                                              "Value": "dnd,,"}, "dnd", "DND")
            await step("PRESENCE_STATE available", {"Action": "Setvar",
                                                    "Variable": f"PRESENCE_STATE(CustomPresence:{ext})",
                                                    "Value": "available,,"}, "available", "Available")
    finally:
        await ami.send({"Action": "QueueRemove", "Queue": "sales", "Interface": f"PJSIP/{ext}"})
        await ami.send({"Action": "Setvar", "Variable": f"DEVICE_STATE(Custom:DND{ext})", "Value": "NOT_INUSE"})
        await ami.send({"Action": "Setvar", "Variable": f"PRESENCE_STATE(CustomPresence:{ext})", "Value": "available,,"})
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sio.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, daemon.stop)
        if proxy is not None:
            await proxy.stop()
        subprocess.run([LAB, "unregister", ext], capture_output=True, timeout=60)
        subprocess.run([LAB, "uas-stop", f"phone-{ext}"], capture_output=True, timeout=60)
        ami.writer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ext", default="1013")
    parser.add_argument("--record", help="write the daemon's AMI dialogue (JSON lines) to this file")
    asyncio.run(main(parser.parse_args()))
