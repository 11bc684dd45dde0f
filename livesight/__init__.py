"""livesight: a headless daemon that watches live video and lets people talk about it."""

__version__ = "0.1.0"
