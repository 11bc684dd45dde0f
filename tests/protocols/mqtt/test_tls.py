"""MQTT over TLS with credentials, against a real Mosquitto: a TLS listener with certificates made by a throwaway CA
(tests/tls_certs.py), a client certificate required, and a password file (mosquitto_passwd). The daemon's bridge and
the gateway's directory watcher connect through the same helper (protocols/mqtt/connect.py); a wrong password, a broker
signed by another CA and a missing client certificate are refused, named in /healthz, and the password is shown
nowhere."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from livesight.config import MQTTConfig, ReconnectConfig
from livesight.errors import ConfigError
from livesight.gateway.directory import Directory
from livesight.gateway.mqtt_watch import DirectoryWatcher
from livesight.protocols.mqtt.bridge import MQTTBridge
from livesight.protocols.mqtt.connect import BrokerConnection
from tests.helpers import eventually
from tests.mosquitto import MOSQUITTO, MOSQUITTO_PASSWD, Mosquitto
from tests.pipeline import pipeline
from tests.tls_certs import OPENSSL, Certs, make_certs

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(
        not (Path(MOSQUITTO).exists() and Path(MOSQUITTO_PASSWD).exists() and shutil.which(OPENSSL)),
        reason="needs mosquitto and openssl (scripts/system-deps.sh)",
    ),
]

PASSWORD = "Mqtt-Pass-9c1e77"
FAST = ReconnectConfig(initial_s=0.1, max_s=0.3, jitter=0.0)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto-tls"), tls=certs, client_certs=True, users={"node": PASSWORD})
    b.start()
    yield b
    b.stop()


def mqtt_cfg(port: int, certs: Certs, prefix: str, **kw: object) -> MQTTConfig:
    data: dict = {
        "enabled": True,
        "port": port,
        "prefix": prefix,
        "username": "node",
        "password": PASSWORD,
        "reconnect": FAST,
        "tls": {"ca_file": str(certs.ca), "cert_file": str(certs.client_cert), "key_file": str(certs.client_key)},
    }
    data.update(kw)
    return MQTTConfig.model_validate(data)


async def _bridge_health(cfg: MQTTConfig, *, connected: bool) -> dict:
    pipe = pipeline().start()
    bridge = MQTTBridge(pipe.service, cfg)
    task = asyncio.create_task(bridge.run(), name="bridge")
    try:
        if connected:
            async with asyncio.timeout(10):
                await bridge.connected.wait()
        else:
            # a missing client certificate shows only after a TLS 1.3 handshake: the attempt ends at the CONNACK timeout
            await eventually(lambda: bridge.counters.connection_failures >= 1, within=25, what="a refused connection")
        return bridge.health()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pipe.stop()


async def test_the_bridge_connects_with_tls_a_client_certificate_and_a_password(
    tls_broker: Mosquitto, certs: Certs, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = mqtt_cfg(tls_broker.port, certs, prefix)
    health = await _bridge_health(cfg, connected=True)
    assert health["state"] == "connected"
    # what it published is there for a client with the same credentials (and for nobody else: see below)
    async with aiomqtt.Client(**BrokerConnection(cfg).client_args()) as c:
        await c.subscribe(f"{prefix}/available", qos=1)
        async with asyncio.timeout(5):
            msg = await anext(aiter(c.messages))
    assert msg.payload == b"offline"  # retained: the bridge said so on its clean stop
    assert PASSWORD not in caplog.text and PASSWORD not in json.dumps(health)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"password": "Not-The-Password-1"}, "not authorized"),
        ({"username": None, "password": None}, "not authorized"),
        ("other_ca", "certificate"),
        pytest.param("no_client_cert", "", marks=pytest.mark.slow),  # ~10 s: refused after the TLS 1.3 handshake
    ],
    ids=["wrong-password", "anonymous", "broker-signed-by-another-ca", "no-client-certificate"],
)
async def test_refused_connections_are_named_and_never_show_the_password(
    tls_broker: Mosquitto,
    certs: Certs,
    prefix: str,
    change: object,
    why: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    if change == "other_ca":
        kw: dict = {"tls": {"ca_file": str(certs.other_ca), "cert_file": str(certs.client_cert),
                            "key_file": str(certs.client_key)}}  # fmt: skip
    elif change == "no_client_cert":
        kw = {"tls": {"ca_file": str(certs.ca)}}
    else:
        kw = dict(change)  # type: ignore[call-overload]
    cfg = mqtt_cfg(tls_broker.port, certs, prefix, **kw)
    health = await _bridge_health(cfg, connected=False)
    assert health["state"] == "disconnected" and health["connects"] == 0
    assert why in health["reason"].lower(), health
    for shown in (caplog.text, json.dumps(health)):
        assert PASSWORD not in shown and "Not-The-Password-1" not in shown


async def test_the_gateways_directory_watcher_connects_the_same_way(
    tls_broker: Mosquitto, certs: Certs, prefix: str
) -> None:
    cfg = mqtt_cfg(tls_broker.port, certs, prefix)
    async with aiomqtt.Client(**BrokerConnection(cfg).client_args()) as c:
        await c.publish(f"{prefix}/nodes/a/available", b"online", qos=1, retain=True)
    watcher = DirectoryWatcher(Directory({"door": "a"}, nodes=["a"]), cfg)
    task = asyncio.create_task(watcher.run(), name="directory")
    try:
        await eventually(lambda: watcher.connects >= 1 and watcher.messages >= 1, what="directory synced over TLS")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    async with aiomqtt.Client(**BrokerConnection(cfg).client_args()) as c:
        await c.publish(f"{prefix}/nodes/a/available", b"", qos=1, retain=True)


def test_bad_tls_files_are_config_errors_naming_the_field(tmp_path: Path, certs: Certs) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.ca_file"):
        BrokerConnection(MQTTConfig(tls={"ca_file": str(tmp_path / "missing.pem")}))
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.cert_file"):
        BrokerConnection(MQTTConfig(tls={"cert_file": str(certs.ca), "key_file": str(certs.client_key)}))
    with pytest.raises(ValueError, match="cert_file and key_file go together"):
        MQTTConfig(tls={"cert_file": str(certs.client_cert)})
