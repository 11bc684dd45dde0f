"""Renders docs/configuration.md from the pydantic models, so the reference never drifts from the code.

`python -m livesight.config_doc > docs/configuration.md`; a test checks the file is current.
"""

from __future__ import annotations

import inspect
import typing

from pydantic import BaseModel
from pydantic.fields import PydanticUndefined

from livesight.config import Config, GatewayConfig

HEADER = """# Configuration reference

YAML, validated at start (unknown keys are errors); `${NAME}` and `${NAME:-default}` are replaced from the
environment. Check a file with `livesight validate-config FILE`: it prints `OK` or every error with its field path
(e.g. `cameras.0.sample_fps: Input should be greater than 0`). Examples: `configs/`.

Combinations that cannot work are refused too, naming every field involved: `keyframe_every_s` with DTD
`mode: off` (every frame is already kept whole); `mode: relative` with `threshold: 1.0` (drops every token);
`pixel_precheck: 1.0` in feature or relative mode (the encoder would never run); a `memory.token_budget` smaller
than one frame's tokens at `model.image_size` ((image_size / 28)² tokens).

This page is generated from `livesight/config.py` by `python -m livesight.config_doc`.
"""


def _type_name(ann: object) -> str:
    text = str(ann).replace("typing.", "").replace("livesight.config.", "")
    for cls in ("<class '", "'>"):
        text = text.replace(cls, "")
    return text


_OPS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "min length", "max_length": "max length"}


def _constraint(meta: object) -> str:
    parts = []
    for attr, op in _OPS.items():
        v = getattr(meta, attr, None)
        if v is not None:
            parts.append(f"{op} {v}")
    pattern = getattr(meta, "pattern", None)
    if pattern:
        parts.append(f"pattern `{pattern}`")
    return ", ".join(parts) or str(meta)


def _nested(ann: object) -> type[BaseModel] | None:
    for arg in (ann, *typing.get_args(ann)):
        for inner in (arg, *typing.get_args(arg)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def render_model(model: type[BaseModel], prefix: str, out: list[str], seen: set[type[BaseModel]]) -> None:
    out.append(f"\n## `{prefix or 'top level'}`\n")
    if model.__doc__ and model is not Config:
        out.append(inspect.cleandoc(model.__doc__) + "\n")
    out.append("| key | type | default | meaning |\n| --- | --- | --- | --- |")
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, f in model.model_fields.items():
        default = "required" if f.default is PydanticUndefined else f.default
        if f.default_factory is not None:
            default = "(computed)"
        if isinstance(default, BaseModel):
            default = "(see below)"
        desc = (f.description or "").replace("|", "\\|")
        constraints = ", ".join(_constraint(m) for m in f.metadata)
        if constraints:
            desc = f"{desc} ({constraints})" if desc else constraints
        out.append(f"| `{name}` | `{_type_name(f.annotation)}` | `{default}` | {desc} |")
        sub = _nested(f.annotation)
        if sub is not None:
            key = f"{prefix}.{name}" if prefix else name
            if typing.get_origin(f.annotation) is list:
                key += "[]"
            nested.append((key, sub))
    for key, sub in nested:
        render_model(sub, key, out, seen)


def render() -> str:
    out = [HEADER]
    render_model(Config, "", out, set())
    out.append("\n## `livesight gateway`\n")
    out.append(inspect.cleandoc(GatewayConfig.__doc__ or "") + "\n")
    reads = ", ".join(f"`{k}`" for k in GatewayConfig.model_fields)
    out.append(f"Its keys: {reads}; `fleet` is required, `model` is not (docs/fleet.md).")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
