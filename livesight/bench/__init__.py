"""livesight.bench"""

BENCHES = ("ingest", "dtd", "memory", "e2e", "scenes", "remote")  # `livesight bench all` runs these, in this order
