"""A throwaway certificate authority for tests (openssl CLI): a CA, a server certificate for 127.0.0.1/localhost and a
client certificate, all signed by the CA. Nothing is ever trusted outside the test that made them.

    certs = make_certs(tmp_path)          # certs.ca, certs.server_cert/key, certs.client_cert/key, certs.other_ca
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: a client trusting only it must refuse the server


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", f"/CN=livesight test {name}", "-keyout", str(key), "-out", str(cert), cwd=d)  # fmt: skip
    return key, cert


def _signed(d: Path, name: str, ca_key: Path, ca_cert: Path, ext: str) -> tuple[Path, Path]:
    key, csr, cert, extfile = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.ext"
    extfile.write_text(ext)
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
         "-keyout", str(key), "-out", str(csr), cwd=d)  # fmt: skip
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
         "-days", "2", "-extfile", str(extfile), "-out", str(cert), cwd=d)  # fmt: skip
    return key, cert


def make_certs(d: Path) -> Certs:
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _ca(d, "ca")
    _, other = _ca(d, "other-ca")
    server_key, server_cert = _signed(
        d, "server", ca_key, ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    client_key, client_cert = _signed(d, "client", ca_key, ca, "extendedKeyUsage=clientAuth\n")
    return Certs(ca, server_cert, server_key, client_cert, client_key, other)
