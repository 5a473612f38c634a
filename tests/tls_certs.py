"""Certificates generated at test time with Debian's ``openssl`` command (no key material in the repo).

`make_pki(directory)` writes a CA, a server certificate for ``127.0.0.1``/``localhost`` (SAN IP and
DNS) signed by it, and a client certificate signed by it; `server_cert` issues another server
certificate (a renewal) from the same CA. Keys are EC P-256 (fast to generate and to handshake).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class PKI:
    dir: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)


def issue(pki_dir: Path, ca_cert: Path, ca_key: Path, name: str, *, cn: str, san: str | None,
          client: bool = False) -> tuple[Path, Path]:
    """A certificate and key signed by the CA; ``san`` like ``IP:127.0.0.1,DNS:localhost``."""
    key, csr, cert, ext = (pki_dir / f"{name}.key", pki_dir / f"{name}.csr", pki_dir / f"{name}.crt",
                           pki_dir / f"{name}.ext")
    _key(key)
    _openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr)
    lines = ["basicConstraints=CA:FALSE", f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
    if san:
        lines.append(f"subjectAltName={san}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
             "-extfile", ext, "-out", cert)
    return cert, key


def server_cert(pki: PKI, name: str, cn: str = "telephonyd test") -> tuple[Path, Path]:
    return issue(pki.dir, pki.ca_cert, pki.ca_key, name, cn=cn, san="IP:127.0.0.1,DNS:localhost")


def make_pki(directory: Path) -> PKI:
    if shutil.which("openssl") is None:
        if os.environ.get("TELEPHONYD_REQUIRE_SERVICES") == "1":
            pytest.fail("openssl (Debian package openssl) is not installed and TELEPHONYD_REQUIRE_SERVICES=1")
        pytest.skip("openssl (Debian package openssl) is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    _key(ca_key)
    _openssl("req", "-x509", "-new", "-key", ca_key, "-subj", "/CN=telephonyd test CA", "-days", "2",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", ca_cert)
    pki = PKI(directory, ca_cert, ca_key, Path(), Path(), Path(), Path())
    pki.server_cert, pki.server_key = server_cert(pki, "server")
    pki.client_cert, pki.client_key = issue(directory, ca_cert, ca_key, "client", cn="admin client", san=None,
                                            client=True)
    return pki
