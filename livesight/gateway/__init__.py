"""`livesight gateway`: one stateless front for a fleet of daemons (docs/fleet.md).

directory.py   who runs which camera and which nodes are up (pure state, fed from MQTT retained topics)
mqtt_watch.py  the MQTT subscriber feeding the directory (reconnects with backoff)
upstream.py    one WebSocket connection from a client's session to one node
session.py     one client: the same WebSocket protocol as a daemon, each message routed to the camera's node
stats.py       the fleet-wide `stats` event, merged from the nodes' (pure)
server.py      WebSocket + HTTP (chat page, /healthz, /metrics) on one port
run.py         the command: config, logging, signals
"""
