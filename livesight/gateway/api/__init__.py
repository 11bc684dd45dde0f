"""The gateway's HTTP API beside the WebSocket protocol: what a node serves under `/api/`, for every camera.

- node_http.py  one bounded HTTP client to the nodes' `/fleet/api/…` (per-node connection slots, timeouts, body cap)
- pictures.py   `/api/cameras/<id>/…`: relayed to the camera's node (pictures, scenes, the summary stream)
- scenes.py     `/api/scenes` (asks every node, merges; a node down is named, `partial`) and
                `/api/timeline/<id>/keyframes/<n>.jpg` (the node that holds the entry)
"""
