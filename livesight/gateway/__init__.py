"""`livesight gateway`: one stateless front for a fleet of daemons, every surface of a daemon (docs/fleet.md).

directory.py     who runs which camera, which nodes are up, where to reach them (config addresses, signed
                 announcements); pure state fed from MQTT retained topics, O(1) lookups
mqtt_watch.py    the MQTT subscriber feeding the directory (reconnects with backoff)
upstream.py      the one WebSocket link to one node (its /fleet endpoint, the fleet's credential)
hub.py           every client over the links: link ids mapped per client, broadcasts fanned out encoded once
fleet_service.py one client's view: the fleet as a ServiceAPI, so the daemon's session core and OpenAI routes run on it
response_ids.py  a client never sees two live answers share an id
session.py       one WebSocket client: the daemon's ClientSession over its FleetService
api/             the HTTP API: /api/cameras/… relayed from the camera's node (pictures, scenes, summaries), the fleet's
                 /api/scenes (every node asked, merged; a node down named) and keyframes (api/node_http.py: httpx)
stats.py         the fleet-wide `stats` event, paced (pure)
health.py        /healthz and /metrics, built once per change
server.py        the port: WebSocket, page, health, metrics, pictures, /v1
run.py           the command: config, logging, signals
"""
