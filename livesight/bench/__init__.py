"""livesight.bench"""

# `livesight bench all` runs these, in this order
BENCHES = ("ingest", "dtd", "memory", "e2e", "capacity", "scenes", "remote", "recall")
