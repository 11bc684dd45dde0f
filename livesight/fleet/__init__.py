"""Fleet: several daemons behind one MQTT broker and a gateway (docs/fleet.md).

`ownership` (pure) decides which node runs which camera; `topics` (pure) names the fleet's MQTT topics and encodes
their payloads; `announce` publishes a node's part of the directory through the MQTT bridge.
"""
