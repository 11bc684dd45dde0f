"""livesight.bench"""

BENCHES = ("ingest", "dtd", "memory", "e2e")  # `livesight bench all` runs these, in this order
