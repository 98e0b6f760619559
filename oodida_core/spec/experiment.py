"""The spec's optional ``experiment`` key: which experiment an assignment is a variant of.

An A/B experiment (``oodida_user.experiment``) runs one assignment per variant, each over its
own group of vehicles; it tags every one of them with this key so the experiment can be found
again and its statistics recomputed from the stored assignments (``o.experiment_result(id)``).
The cloud validates and stores it with the spec and otherwise ignores it.

One checker (``experiment_tag``) and one JSON Schema (``experiment_schema``), written from the
same constants, so that the schema accepts exactly what the checker accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from oodida_core.methods.values import WHOLE, Bad, bad, integer

EXPERIMENT_ID = r"[A-Za-z0-9_-]{1,64}"
VARIANT_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}"
METRIC_NAME = r"[A-Za-z0-9_.:/-]{1,200}"
TESTS = ("welch", "mannwhitney")
MAX_VARIANTS = 20
MAX_SEED = 2**63 - 1
_END = "$(?!\\n)"  # as oodida_core.spec.schema: `$` alone also matches before a final newline

EXPERIMENT_HELP = (
    "Set by o.experiment: the experiment this assignment is one variant of (id, variant, the "
    "experiment's variants in order, the seed of its random split, and how its statistics are "
    "computed: metric and test)."
)


class ExperimentTag(BaseModel):
    """An assignment's place in an A/B experiment."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Experiment")

    id: str = Field(pattern=f"^{EXPERIMENT_ID}$", description="The experiment's id.")
    variant: str = Field(pattern=f"^{VARIANT_NAME}$", description="This assignment's variant.")
    variants: tuple[str, ...] = Field(
        min_length=2, max_length=MAX_VARIANTS, description="Every variant, the control first."
    )
    seed: int = Field(ge=0, le=MAX_SEED, description="The seed of the random split into groups.")
    metric: str | None = Field(
        default=None, description="The entry of each on-board value compared (a signal), or none."
    )
    test: Literal["welch", "mannwhitney"] = Field(default="welch", description="The test of a difference.")


def _name(value: object, pattern: str, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise bad(what)
    return value


_RULES = {
    "id": f"experiment.id must be 1-64 letters, digits, '_' or '-' ({EXPERIMENT_ID})",
    "variant": f"experiment.variant must be a variant name ({VARIANT_NAME})",
    "variants": (f"experiment.variants must be a list of 2 to {MAX_VARIANTS} variant names ({VARIANT_NAME})"),
    "seed": f"experiment.seed must be an integer from 0 to {MAX_SEED:,}",
    "metric": f"experiment.metric must be null or the name of an on-board value's entry ({METRIC_NAME})",
    "test": f"experiment.test must be one of {', '.join(TESTS)}",
}
_REQUIRED = ("id", "variant", "variants", "seed")


def _variants(value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not 2 <= len(value) <= MAX_VARIANTS:
        raise bad(_RULES["variants"])
    return tuple(_name(v, VARIANT_NAME, _RULES["variants"]) for v in value)


def _field(key: str, value: object) -> object:
    if key == "id":
        return _name(value, EXPERIMENT_ID, _RULES["id"])
    if key == "variant":
        return _name(value, VARIANT_NAME, _RULES["variant"])
    if key == "variants":
        return _variants(value)
    if key == "seed":
        try:
            return integer(value, 0, MAX_SEED)
        except Bad:
            raise bad(_RULES["seed"]) from None
    if key == "metric":
        return None if value is None else _name(value, METRIC_NAME, _RULES["metric"])
    if value is None:
        return "welch"
    if value not in TESTS:
        raise bad(_RULES["test"])
    return value


def experiment_tag(value: object) -> ExperimentTag:
    """The ``experiment`` key's value checked: an ExperimentTag, or Bad naming every problem."""
    if isinstance(value, ExperimentTag):
        return value
    if not isinstance(value, Mapping):
        raise bad("must be an object with id, variant, variants and seed (set by o.experiment)")
    problems: list[tuple[object, str]] = []
    out: dict[str, Any] = {}
    for key, entry in value.items():
        if key not in _RULES:
            problems.append((key, f"unknown key in experiment (allowed: {', '.join(_RULES)})"))
            continue
        try:
            out[key] = _field(str(key), entry)
        except Bad as exc:
            problems.extend((entry if found is WHOLE else found, rule) for found, rule in exc.problems)
    problems += [(key, f"experiment.{key} is required") for key in _REQUIRED if key not in value]
    if problems:
        raise Bad(*problems)
    return ExperimentTag.model_validate(out)


def experiment_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of what ``experiment_tag`` accepts."""

    def pattern(p: str) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{p}{_END}"}

    return {
        "type": "object",
        "properties": {
            "id": pattern(EXPERIMENT_ID),
            "variant": pattern(VARIANT_NAME),
            "variants": {
                "type": "array",
                "items": pattern(VARIANT_NAME),
                "minItems": 2,
                "maxItems": MAX_VARIANTS,
            },
            "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
            "metric": {"anyOf": [pattern(METRIC_NAME), {"type": "null"}]},
            "test": {"anyOf": [{"enum": list(TESTS)}, {"type": "null"}]},
        },
        "required": list(_REQUIRED),
        "additionalProperties": False,
    }
