"""Ids clients correlate on are unique across processes started at the same instant, fit the protocol's id rules,
and sort by creation time."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from livesight.daemon.generation.responses import ResponseJob, new_response_id
from livesight.ids import ID_CHARS, id_time, new_id
from livesight.types import ResponseKind

PROTOCOL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # docs/protocol.md: what a client may send back as an id

MINT = (
    "from livesight.daemon.generation.responses import new_response_id as f\n"
    "print('\\n'.join(f() for _ in range(20000)))"
)


def test_ids_from_processes_started_together_never_collide() -> None:
    procs = [subprocess.Popen([sys.executable, "-c", MINT], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    ids: list[str] = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        ids += out.split()
    assert len(ids) == 80_000
    assert len(set(ids)) == len(ids)


def test_shape_prefix_and_time_order() -> None:
    before = time.time()
    a = new_id("resp_")
    time.sleep(0.002)
    b = new_id("resp_")
    after = time.time()
    for x in (a, b):
        assert re.fullmatch(rf"resp_[0-9a-hjkmnp-tv-z]{{{ID_CHARS}}}", x), x
        assert PROTOCOL_ID.match(x), "a client must be able to send a response id back (query.cancel)"
        assert before - 0.002 <= id_time(x) <= after + 0.002
    assert a < b, "ids made later sort later (milliseconds first)"
    assert new_id("sess_").startswith("sess_") and new_id("gw_").startswith("gw_")


def test_every_response_gets_a_fresh_fleet_unique_id() -> None:
    jobs = [ResponseJob(camera="c", kind=ResponseKind.QUERY, prompt="?", sink=lambda e: None) for _ in range(1000)]
    ids = {j.response_id for j in jobs} | {new_response_id() for _ in range(1000)}
    assert len(ids) == 2000
    assert all(i.startswith("resp_") and len(i) == len("resp_") + ID_CHARS for i in ids)
