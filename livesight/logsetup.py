"""Logging: human-readable text, or one JSON object per line (`--log-format json`) for log shippers.

Every line is scrubbed of the process's secrets (`setup_logging(..., secrets=cfg.secrets())`: camera URL
credentials, the bearer token, MQTT and model passwords) and of any URL's credentials, tracebacks included: the last
guard behind the redaction each part does where it parses a secret (livesight/redact.py).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

from livesight.redact import scrub

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(TEXT_FORMAT, "%H:%M:%S")
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), self.secrets)


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": scrub(record.getMessage(), self.secrets),
        }
        if record.exc_info:
            out["exc"] = scrub(self.formatException(record.exc_info), self.secrets)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", *, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "transformers", "httpx", "urllib3", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
