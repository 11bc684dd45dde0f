"""The HTTP routes over the past (the web folder holds 12 modules already): summaries of a period of a camera's
timeline (summary_routes.py) and the time parameters they share (times.py)."""
