"""Camera ownership: explicit owners, rendezvous hashing (deterministic, balanced, minimal movement), config checks."""

from __future__ import annotations

import statistics

import pytest

from livesight.config import parse_config
from livesight.errors import ConfigError
from livesight.fleet.ownership import assignment, balance, cameras_of, for_node, hashed_owner, moved, score

CAMS = [f"cam{i:03d}" for i in range(600)]


def fleet_cfg(nodes: list[str], cameras: list[dict], **extra) -> dict:
    return {"cameras": cameras, "model": {"preset": "tiny-random"}, "fleet": {"nodes": nodes}, **extra}


def test_score_is_stable_across_processes() -> None:
    # literal values: a change of hash function would silently reshuffle every fleet
    assert score("a", "door") == 17042277495057679563
    assert hashed_owner("door", ["a", "b"]) == hashed_owner("door", ["b", "a"])  # the list order does not matter
    assert [hashed_owner(c, ["a", "b", "c"]) for c in ("door", "yard", "gate", "hall")] == ["a", "a", "b", "a"]


def test_hashing_is_balanced() -> None:
    nodes = [f"livesight-{i}" for i in range(6)]
    counts = balance({c: hashed_owner(c, nodes) for c in CAMS}, nodes)
    assert sum(counts.values()) == len(CAMS)
    mean = len(CAMS) / len(nodes)
    # 100 cameras per node expected; a binomial spread of ~9: every node within ±30 %
    assert all(0.7 * mean <= n <= 1.3 * mean for n in counts.values()), counts
    assert statistics.pstdev(counts.values()) < 0.15 * mean


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_adding_a_node_moves_only_its_share(n: int) -> None:
    nodes = [f"n{i}" for i in range(n)]
    before = {c: hashed_owner(c, nodes) for c in CAMS}
    after = {c: hashed_owner(c, [*nodes, "new"]) for c in CAMS}
    changed = moved(before, after)
    assert changed, "the new node got nothing"
    assert all(after[c] == "new" for c in changed), "a camera moved between two old nodes"
    share = len(changed) / len(CAMS)
    assert abs(share - 1 / (n + 1)) < 0.06, share


def test_removing_a_node_moves_only_its_cameras() -> None:
    nodes = ["a", "b", "c", "d"]
    before = {c: hashed_owner(c, nodes) for c in CAMS}
    after = {c: hashed_owner(c, ["a", "b", "d"]) for c in CAMS}
    assert moved(before, after) == {c for c, o in before.items() if o == "c"}


def test_explicit_owner_wins_and_each_camera_has_one_node() -> None:
    cams = [{"id": c, "source": "builtin:demo"} for c in CAMS[:40]]
    cams[0]["node"] = "b"
    cams[1]["node"] = "a"
    cfg = parse_config(fleet_cfg(["a", "b", "c"], cams))
    assign = assignment(cfg)
    assert assign["cam000"] == "b" and assign["cam001"] == "a"
    parts = [for_node(cfg, n) for n in ("a", "b", "c")]
    ids = [c.id for p in parts for c in p.cameras]
    assert sorted(ids) == sorted(c["id"] for c in cams)  # every camera on exactly one node
    assert [p.node.id for p in parts] == ["a", "b", "c"]
    assert [c.id for c in parts[1].cameras] == cameras_of(assign, "b")


def test_without_fleet_the_config_is_unchanged() -> None:
    cfg = parse_config({"cameras": [{"id": "x", "source": "builtin:demo"}], "model": {"preset": "tiny-random"}})
    assert for_node(cfg) is cfg
    assert for_node(cfg, "other").cameras == cfg.cameras
    assert cfg.node.id  # the host name by default


def test_node_outside_the_fleet_is_refused() -> None:
    cfg = parse_config(fleet_cfg(["a", "b"], [{"id": "x", "source": "builtin:demo"}]))
    with pytest.raises(ConfigError, match=r"node.id: 'z' is not one of fleet.nodes"):
        for_node(cfg, "z")
    with pytest.raises(ConfigError, match="--node"):
        for_node(cfg, "bad id!")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (fleet_cfg(["a", "a"], [{"id": "x", "source": "builtin:demo"}]), "fleet.nodes: node ids must be unique"),
        (fleet_cfg(["a"], [{"id": "x", "source": "builtin:demo", "node": "b"}]), "cameras.0.node: 'b' is not one"),
        (fleet_cfg([], [{"id": "x", "source": "builtin:demo"}]), "fleet.nodes"),
        (
            {"cameras": [{"id": "x", "source": "builtin:demo", "node": "a"}], "model": {"preset": "tiny-random"}},
            "cameras.0.node: needs a fleet section",
        ),
        (
            {
                "cameras": [{"id": f"c{i}", "source": "builtin:demo"} for i in range(65)],
                "model": {"preset": "tiny-random"},
            },
            "at most 64 cameras",
        ),
        (fleet_cfg(["a"], [{"id": "x", "source": "builtin:demo"}], node={"url": "http://x"}), "node.url"),
    ],
)
def test_fleet_config_errors_name_the_field(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    assert message in str(e.value)
