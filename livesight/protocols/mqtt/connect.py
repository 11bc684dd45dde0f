"""How to reach the broker: `MQTTConfig` → aiomqtt.Client's connection arguments, for every MQTT client of the project
(the daemon's bridge, the gateway's directory watcher), so TLS and credentials mean the same everywhere.

    conn = BrokerConnection(cfg.mqtt)              # reads the TLS files once (ConfigError naming the field if bad)
    client = aiomqtt.Client(**conn.client_args(), identifier=..., will=..., keepalive=...)
    conn.where                                     # "mqtts://broker.lan:8883" for log lines (never a credential)

TLS (`mqtt.tls`): the broker's certificate is verified against `ca_file` (or the system's CAs) and its name against
`mqtt.host`, as a browser would (there is no switch to skip that: make a CA for a test broker instead); a client
certificate is sent when `cert_file`/`key_file` are set. `username`/`password` go in MQTT's CONNECT packet (use TLS
when they cross a network). The password is read here and nowhere else; errors are scrubbed of it.
"""

from __future__ import annotations

import ssl
from typing import Any

from livesight.config import MQTTConfig
from livesight.errors import ConfigError
from livesight.redact import scrub


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when its handshake fails. paho-mqtt (under aiomqtt) wraps the socket and calls
    do_handshake() without closing it on failure: each refused attempt (a wrong CA, a missing client certificate)
    would leave an open socket to the garbage collector, once per reconnect."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def tls_context(cfg: MQTTConfig) -> ssl.SSLContext | None:
    """The client's TLS context, or None without `mqtt.tls`. Raises ConfigError naming the field that is wrong."""
    tls = cfg.tls
    if tls is None:
        return None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"mqtt.tls.ca_file: cannot load {tls.ca_file}: {_why(e)}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.sslsocket_class = _ClosingSSLSocket
    if tls.cert_file is not None:
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                f"mqtt.tls.cert_file/key_file: cannot load {tls.cert_file} with {tls.key_file}: {_why(e)}"
            ) from None
    return ctx


def _why(e: OSError | ssl.SSLError) -> str:
    return e.strerror or getattr(e, "reason", None) or str(e) or type(e).__name__


class BrokerConnection:
    def __init__(self, cfg: MQTTConfig) -> None:
        self.cfg = cfg
        self._tls = tls_context(cfg)
        self.where = f"{'mqtts' if self._tls is not None else 'mqtt'}://{cfg.host}:{cfg.port}"
        self.secrets = (cfg.password.get_secret_value(),) if cfg.password is not None else ()

    def client_args(self) -> dict[str, Any]:
        """hostname, port, username, password, tls_context: the keyword arguments of aiomqtt.Client."""
        return {
            "hostname": self.cfg.host,
            "port": self.cfg.port,
            "username": self.cfg.username,
            "password": self.cfg.password.get_secret_value() if self.cfg.password is not None else None,
            "tls_context": self._tls,
        }

    def describe(self, error: BaseException) -> str:
        """An error of the connection as one line for logs and /healthz (scrubbed of the password)."""
        return scrub(str(error) or type(error).__name__, self.secrets)[:300]
