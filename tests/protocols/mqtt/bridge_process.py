"""Run an MQTT bridge over the daemon's real Service in its own process (for the last-will test).

    python -m tests.protocols.mqtt.bridge_process PORT PREFIX
Prints "connected" once the bridge is online.
"""

from __future__ import annotations

import asyncio
import sys

from livesight.config import MQTTConfig
from livesight.protocols.mqtt.bridge import MQTTBridge
from tests.pipeline import pipeline


async def main(port: int, prefix: str) -> None:
    bridge = MQTTBridge(pipeline().service, MQTTConfig(enabled=True, port=port, prefix=prefix))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(bridge.run(), name="bridge")
        await bridge.connected.wait()
        print("connected", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
