"""The service contract every face uses: ServiceAPI and its typed errors (api.py), the pure event codec (events.py),
the I/O-free session core (session.py). Nothing here imports a network library."""
