"""Drive telephonyd against a lab Asterisk 22.10.1 and compare ps_contacts with Asterisk after each scenario.

Not a test (pytest does not collect it): run by hand where a lab Asterisk with the lab's control script
(``/work/lab/lab.sh``: register/unregister/phone/restart, endpoints 1010-1019, AMI user ``telephonyd``)
is available. Uses endpoints 1018 and 1019 only and refuses to run when someone else has them
registered. Writes the AMI and FastAGI dialogues (tests/fakes/recording_proxy.py) and report.json to
the directory given as its argument; see tests/fixtures/asterisk-22.10.1/conformance/README.md.
"""
import asyncio, json, os, socket, sqlite3, subprocess, sys, time, urllib.request
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fakes.recording_proxy import RecordingProxy

WT = str(Path(__file__).resolve().parents[2]); PY = "/work/venv/bin/python"; LAB = "/work/lab/lab.sh"
RUN = Path(os.environ.get("TELEPHONYD_LIVE_DIR", "/tmp/telephonyd-live")); RUN.mkdir(parents=True, exist_ok=True)
REC = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/telephonyd-live/rec"); REC.mkdir(parents=True, exist_ok=True)
TOKEN = "live-admin-token"
SECRET = os.environ["LAB_AMI_SECRET"]  # the lab AMI user's secret (never in the repo)
REPORT = []


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


P_AMI, P_AGI_D, P_AGI, P_HTTP = free_port(), free_port(), free_port(), free_port()
CFG = RUN / "telephonyd.yml"
CFG.write_text(f"""
node_id: lab-i10
store: {{url: "sqlite+aiosqlite:///{RUN}/state.db"}}
fastagi: {{listen: 127.0.0.1:{P_AGI_D}}}
http: {{listen: 127.0.0.1:{P_HTTP}, admin_token: {TOKEN}}}
did_optimizer: {{enabled: false}}
ami: {{enabled: true, host: 127.0.0.1, port: {P_AMI}, username: telephonyd, secret: {SECRET}, auth: plain}}
ameyo: {{enabled: false}}
logging: {{level: INFO, format: json}}
""")
CFG.chmod(0o600)


def sh(*args, check=False):
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    return r.stdout + r.stderr


def ami(*actions):
    """Raw AMI (direct to 5038, not through the proxy): replies of list actions as lists of dicts."""
    s = socket.create_connection(("127.0.0.1", 5038), timeout=10)
    s.sendall(f"Action: Login\r\nUsername: telephonyd\r\nSecret: {SECRET}\r\nEvents: off\r\nActionID: l\r\n\r\n".encode())
    buf = b""; out = []
    for i, fields in enumerate(actions):
        aid = f"d{i}"
        s.sendall(("".join(f"{k}: {v}\r\n" for k, v in fields) + f"ActionID: {aid}\r\n\r\n").encode())
        msgs = []
        while True:
            while b"\r\n\r\n" in buf:
                m, buf = buf.split(b"\r\n\r\n", 1)
                d = {}
                for line in m.decode(errors="replace").replace("\r", "").split("\n"):
                    k, _, v = line.partition(": ")
                    if k: d.setdefault(k, v)
                if d.get("ActionID") == aid:
                    msgs.append(d)
                    if (d.get("Response") and d.get("EventList") != "start") or d.get("EventList") == "Complete":
                        break
            else:
                buf += s.recv(65536); continue
            break
        out.append(msgs)
    s.close()
    return out


def asterisk_contacts():
    msgs = ami([("Action", "PJSIPShowContacts")])[0]
    return {m["ObjectName"]: (m["Uri"], m["Status"], int(m["ExpirationTime"])) for m in msgs if m.get("Event") == "ContactList"}


def db_contacts():
    con = sqlite3.connect(RUN / "state.db")
    try:
        rows = con.execute("select id, uri, status, expiration_time from ps_contacts").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def api(method, path):
    req = urllib.request.Request(f"http://127.0.0.1:{P_HTTP}{path}", method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def online_view():
    code, data = api("GET", "/api/ami/extensions")
    if code != 200:
        return None
    return {e["endpoint"]: e.get("online") for e in data.get("extensions", [])}


async def converge(name, timeout=5.0, since=None):
    """ps_contacts == Asterisk's listing and every endpoint with a usable contact online, within timeout."""
    t0 = since or time.monotonic()
    while True:
        ast = asterisk_contacts(); db = db_contacts(); view = online_view()
        want_online = {cid.split(";@")[0] for cid, (_, st, _) in ast.items() if st in ("Reachable", "NonQualified")}
        ok_rows = ast == db
        ok_view = view is not None and all(view.get(e) for e in want_online)
        if ok_rows and ok_view:
            took = time.monotonic() - t0
            REPORT.append({"scenario": name, "ok": True, "took_s": round(took, 2), "contacts": len(ast)})
            print(f"OK   {name}: {len(ast)} contacts equal, online {sorted(want_online)} in {took:.2f}s", flush=True)
            return True
        if time.monotonic() - t0 > timeout:
            diff = {k: (ast.get(k), db.get(k)) for k in set(ast) | set(db) if ast.get(k) != db.get(k)}
            REPORT.append({"scenario": name, "ok": False, "diff": str(diff)[:800], "view": str(view)[:400]})
            print(f"FAIL {name}: diff {diff} view {view}", flush=True)
            return False
        await asyncio.sleep(0.2)


class Daemon:
    def __init__(self):
        self.proc = None; self.n = 0

    def start(self):
        self.n += 1
        self.log = open(RUN / f"daemon-{self.n}.log", "w")
        self.proc = subprocess.Popen([PY, "-m", "telephonyd", "run", "-c", str(CFG)], cwd=RUN,
                                     env={**os.environ, "PYTHONPATH": WT}, stdout=self.log, stderr=self.log)

    def stop(self):
        if self.proc:
            self.proc.terminate(); self.proc.wait(20); self.proc = None


async def wait_http():
    for _ in range(200):
        if api("GET", "/status")[0] in (200, 503):
            return
        await asyncio.sleep(0.1)


import threading
PLOOP = asyncio.new_event_loop()
threading.Thread(target=PLOOP.run_forever, daemon=True).start()


class ThreadedProxy:
    """The recording proxy on its own loop, so the driver's blocking calls never stall it."""
    def __init__(self, *args, **kw):
        self.p = asyncio.run_coroutine_threadsafe(RecordingProxy(*args, **kw).start(), PLOOP).result()
    def cut(self): PLOOP.call_soon_threadsafe(self.p.cut)
    def restore(self): PLOOP.call_soon_threadsafe(self.p.restore)
    async def stop(self): asyncio.run_coroutine_threadsafe(self.p.stop(), PLOOP).result()


async def main():
    ami_proxy = ThreadedProxy("127.0.0.1", 5038, REC / "ami_dialogue.jsonl", port=P_AMI)
    agi_proxy = ThreadedProxy("127.0.0.1", P_AGI_D, REC / "fastagi_dialogue.jsonl", port=P_AGI)
    d = Daemon()
    lab = lambda *a: sh(LAB, *a)
    try:
        # clean state for my endpoints
        busy = {cid.split(";@")[0] for cid in asterisk_contacts()}
        assert not busy & {"1018", "1019"}, f"1018/1019 in use by someone: {busy}"
        d.start(); await wait_http()
        await converge("daemon start (fresh ps_contacts)", timeout=10)
        t = time.monotonic()
        r = subprocess.run([PY, "-m", "telephonyd", "refresh", "-c", str(CFG)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": WT}, cwd=RUN, timeout=60)
        print("telephonyd refresh rc", r.returncode, r.stdout.strip()[:300], r.stderr.strip()[-300:], flush=True)
        REPORT.append({"scenario": "telephonyd refresh exit code", "ok": r.returncode == 0, "out": r.stdout[:300]})
        await converge("telephonyd refresh", since=t)
        r = subprocess.run([PY, "-m", "telephonyd", "status", "-c", str(CFG)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": WT}, cwd=RUN, timeout=60)
        print("telephonyd status:", r.stdout.strip()[:1500], flush=True)
        REPORT.append({"scenario": "status contacts line", "ok": "waiting_for_ami" not in r.stdout,
                       "out": [l for l in r.stdout.splitlines() if "contacts" in l][:3]})
        print(lab("phone", "1018", "answer", "500").strip(), flush=True)
        await converge("REGISTER 1018 (phone up, qualified)")
        print(lab("register", "1019", "25").strip(), flush=True)  # no UAS: unreachable, expires in 25 s
        await converge("REGISTER 1019 (no phone behind it)")
        await asyncio.sleep(14)  # qualify 10 s + timeout 3 s -> Unreachable
        await converge("1019 unreachable")
        print(lab("register", "1018", "600").strip(), flush=True)
        await converge("re-REGISTER 1018 (new expiration)")
        print(lab("unregister", "1018").strip(), flush=True)
        await converge("unREGISTER 1018")
        lab("phone-down", "1018")

        print(lab("rx", "module reload res_pjsip.so").strip(), flush=True)
        await converge("module reload res_pjsip.so")


        ami_proxy.cut()
        await asyncio.sleep(1)
        print(lab("register", "1018", "600").strip(), flush=True)  # changes while AMI is down (no UAS now)
        await asyncio.sleep(3)
        ami_proxy.restore(); t = time.monotonic()
        await converge("AMI cut-and-back (1018 registered while cut)", since=t)

        await asyncio.sleep(12)  # 1017 (25 s) has expired by now
        await converge("expiry of 1019 (25 s registration lapsed)")

        d.stop()
        print(lab("register", "1019", "600").strip(), flush=True)
        print(lab("unregister", "1018").strip(), flush=True)  # both while the daemon is stopped
        t = time.monotonic(); d.start(); await wait_http()
        await converge("daemon restart while contacts changed", since=t)
        # Asterisk restart: lab.sh restart writes to a file (its Asterisk keeps inherited pipes open)
        with open(RUN / "restart.out", "w") as f:
            proc = subprocess.Popen([LAB, "restart"], stdout=f, stderr=f, stdin=subprocess.DEVNULL, start_new_session=True)
        for _ in range(600):
            await asyncio.sleep(0.1)
            if "fully booted" in (RUN / "restart.out").read_text():
                break
        booted = time.monotonic()
        print("asterisk:", (RUN / "restart.out").read_text().strip(), flush=True)
        await converge("Asterisk restart (lab.sh restart), from FullyBooted", since=booted)
        REPORT.append({"scenario": "AMI logins", "log": sh("grep", "-c", "AMI connected", str(RUN / f"daemon-{d.n}.log"))})
        # calls: the VICIdial-style flow (start stage, h,1 HVcauses line, h,2 argument form) to our FastAGI
        for number in ("915551234567", "915552345678"):
            ami([("Action", "Originate"), ("Channel", f"Local/{number}@lab-local"), ("Application", "Wait"),
                 ("Data", "3"), ("Variable", f"AGIPORT={P_AGI}"), ("Async", "true")])
            await asyncio.sleep(20)
        con = sqlite3.connect(RUN / "state.db")
        rows = con.execute("select * from outbox").fetchall() if True else []
        con.close()
        print("outbox rows:", len(rows), [str(r)[:300] for r in rows], flush=True)
        REPORT.append({"scenario": "calls", "outbox_rows": len(rows)})
        await asyncio.sleep(1)
        if proc.poll() is None:
            proc.terminate()
    finally:
        d.stop()
        await ami_proxy.stop(); await agi_proxy.stop()
        (REC / "report.json").write_text(json.dumps(REPORT, indent=1))
        print(json.dumps(REPORT, indent=1))


asyncio.run(main())
