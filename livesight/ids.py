"""Ids that clients correlate on (responses, completions, sessions, MQTT questions): unique across processes, nodes
and restarts, so a gateway in front of several daemons never sees two answers share one.

    new_id("resp_") → "resp_01jeq4y3z8k2m5n6p7q8r9s0tv"

The part after the prefix is a ULID in lower-case Crockford base32 (26 characters): 48 bits of milliseconds since
the epoch (ids sort by creation time, which helps reading the event log) then 80 random bits from the OS. Two ids
made in the same millisecond by any two processes collide with probability 2^-80.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case (no i, l, o, u)
_RANDOM_BITS = 80
ID_CHARS = 26  # 130 bits of base32 for 128 bits of id


def new_id(prefix: str) -> str:
    """`prefix` + a time-ordered id with 80 random bits (a ULID)."""
    ms = time.time_ns() // 1_000_000
    value = (ms & ((1 << 48) - 1)) << _RANDOM_BITS | int.from_bytes(os.urandom(_RANDOM_BITS // 8), "big")
    chars = []
    for _ in range(ID_CHARS):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return prefix + "".join(reversed(chars))


def id_time(id_: str) -> float:
    """Seconds since the epoch at which an id of `new_id` was made (the prefix is skipped)."""
    value = 0
    for ch in id_[-ID_CHARS:]:
        value = value * 32 + _ALPHABET.index(ch)
    return (value >> _RANDOM_BITS) / 1000.0
