"""A 3-node MariaDB Galera cluster on loopback for the Galera tests (Debian's galera-4 and mariadbd).

Each node is a ``mariadbd --no-defaults`` with its own datadir under a temporary directory, its own
client, group (gmcast), IST and SST ports (free loopback ports), and root over TCP without a
password. The first node bootstraps the cluster (``--wsrep-new-cluster``); the others start from a copy of
its cleanly stopped datadir, so they join without a state transfer (``wsrep_sst_method=skip``).
A node killed in a test is not started again.
Failure detection is shortened (``evs.suspect_timeout`` 1.5 s, ``evs.inactive_timeout`` 3 s) so that
a node killed with SIGKILL leaves the group in about 2 s; with Galera's defaults (5 s / 15 s) the
surviving nodes hold every commit for about 5 s after a node dies, whatever the clients do.
`GaleraCluster.close` kills every node it started (SIGKILL) and is safe to call more than once.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

GALERA_LIB = Path("/usr/lib/galera/libgalera_smm.so")
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"


def missing() -> str | None:
    """Why the cluster cannot run here (None when it can)."""
    if not GALERA_LIB.exists():
        return f"{GALERA_LIB} is missing (Debian package galera-4)"
    if not os.path.exists(MARIADBD) or not os.path.exists(INSTALL_DB):
        return "mariadbd / mariadb-install-db are missing (Debian package mariadb-server)"
    return None


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports that can be bound now, below the kernel's ephemeral range (32768+),
    where the nodes' own outgoing connections would otherwise take one of them first."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(20000, 32000)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


class GaleraNode:
    def __init__(self, index: int, base: Path, ports: list[int]) -> None:
        self.index = index
        self.name = f"node{index + 1}"
        self.datadir = base / self.name
        self.port, self.group_port, self.ist_port, self.sst_port = ports
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def url(self, database: str) -> str:
        return f"mysql+aiomysql://root@127.0.0.1:{self.port}/{database}"

    def args(self, cluster_address: str, bootstrap: bool) -> list[str]:
        provider = ";".join([
            f"gmcast.listen_addr=tcp://127.0.0.1:{self.group_port}", f"ist.recv_addr=127.0.0.1:{self.ist_port}",
            "gcache.size=32M", "evs.suspect_timeout=PT1.5S", "evs.inactive_timeout=PT3S",
            "evs.keepalive_period=PT0.5S", "evs.inactive_check_period=PT0.5S", "pc.recovery=false",
        ])
        args = [
            MARIADBD, "--no-defaults", "--user=root", f"--datadir={self.datadir}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.datadir}/mysqld.sock", f"--pid-file={self.datadir}/mysqld.pid",
            f"--log-error={self.datadir}/error.log", "--skip-name-resolve=0",
            "--innodb-buffer-pool-size=48M", "--innodb-log-file-size=24M", "--innodb-flush-log-at-trx-commit=2",
            "--binlog-format=ROW", "--innodb-autoinc-lock-mode=2", "--default-storage-engine=InnoDB",
            "--wsrep-on=ON", f"--wsrep-provider={GALERA_LIB}", f"--wsrep-cluster-address={cluster_address}",
            "--wsrep-cluster-name=telephonyd-test", f"--wsrep-node-name={self.name}",
            "--wsrep-node-address=127.0.0.1", f"--wsrep-provider-options={provider}",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
            "--wsrep-sst-method=rsync",
            "--max-connections=300",
        ]
        if bootstrap:
            args.append("--wsrep-new-cluster")
        return args

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.frozen:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.frozen = False

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.proc is not None and self.frozen:
            self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def error_log(self) -> str:
        path = self.datadir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


class GaleraCluster:
    def __init__(self, base: Path, size: int = 3) -> None:
        self.base = base
        ports = free_ports(4 * size)
        self.nodes = [GaleraNode(i, base, ports[4 * i:4 * i + 4]) for i in range(size)]
        self.address = "gcomm://" + ",".join(f"127.0.0.1:{n.group_port}" for n in self.nodes)

    def start(self, timeout: float = 90.0) -> None:
        """Bootstrap node 1, give root a TCP login, then let the others join by rsync SST."""
        first = self.nodes[0]
        subprocess.run([INSTALL_DB, "--no-defaults", "--user=root", f"--datadir={first.datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)
        self._launch(first, bootstrap=True)
        self._wait_synced(first, timeout)
        self.sql(first, "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; "
                        "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
        nobody = pwd.getpwnam("nobody")
        for node in self.nodes[1:]:
            node.datadir.mkdir(parents=True)
            # The joiner's rsync daemon runs as nobody when started by root: let it fill the datadir.
            os.chown(node.datadir, nobody.pw_uid, nobody.pw_gid)
            self._launch(node, bootstrap=False)
            self._wait_synced(node, timeout)

    def _launch(self, node: GaleraNode, bootstrap: bool) -> None:
        node.proc = subprocess.Popen(node.args(self.address, bootstrap), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def _wait_synced(self, node: GaleraNode, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = "not answering"
        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited: {node.error_log()[-3000:]}")
            try:
                state = self.sql(node, "SHOW STATUS LIKE 'wsrep_local_state_comment'", tcp=False)[0][1]
                if state == "Synced":
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{node.name} not Synced within {timeout}s ({state}): {node.error_log()[-3000:]}")

    def sql(self, node: GaleraNode, statements: str, *, tcp: bool = False) -> list[tuple]:
        """Run ``;``-separated statements as root (unix socket unless ``tcp``); the last one's rows."""
        import pymysql

        kwargs = {"host": "127.0.0.1", "port": node.port} if tcp else {"unix_socket": str(node.datadir / "mysqld.sock")}
        conn = pymysql.connect(user="root", connect_timeout=3, read_timeout=10, write_timeout=10, autocommit=True,
                               **kwargs)
        try:
            rows: list[tuple] = []
            with conn.cursor() as cur:
                for statement in (s.strip() for s in statements.split(";")):
                    if statement:
                        cur.execute(statement)
                        rows = list(cur.fetchall())
            return rows
        finally:
            conn.close()

    def cluster_size(self, node: GaleraNode) -> int:
        return int(self.sql(node, "SHOW STATUS LIKE 'wsrep_cluster_size'")[0][1])

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
