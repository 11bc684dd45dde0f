"""`livesight bench gateway` at fleet scale: simulated nodes (fake_nodes.py), a crowd of clients (crowd.py), and the
driver that measures the real gateway between them (scale.py)."""
