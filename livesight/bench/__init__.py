"""livesight.bench"""

BENCHES = ("ingest", "dtd", "memory", "e2e", "capacity", "scenes")  # `livesight bench all` runs these, in this order
