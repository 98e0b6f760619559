"""What the analyst gets back: an assignment's result, its iterations, readable as text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from oodida_core.wire import AssignmentRecord, IterationResult


def _int_keys(value: Any) -> Any:
    """collect's {client_id: value} comes back from JSON with string keys; restore the ints."""
    if isinstance(value, dict) and value and all(isinstance(k, str) and k.isdigit() for k in value):
        return {int(k): v for k, v in value.items()}
    return value


def iteration_for_user(it: IterationResult, offboard: str) -> IterationResult:
    if offboard == "collect" and isinstance(it.value, dict):
        return it.model_copy(update={"value": _int_keys(it.value)})
    return it


@dataclass(frozen=True)
class Result:
    """An assignment's outcome so far: status, iterations, and the latest off-board value."""

    id: str
    status: str
    spec: dict[str, Any]
    clients: tuple[int, ...]
    iterations: list[IterationResult] = field(default_factory=list)
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def build(cls, record: AssignmentRecord, iterations: list[IterationResult]) -> Result:
        offboard = str(record.spec.get("offboard", "collect"))
        return cls(
            id=record.id,
            status=record.status,
            spec=dict(record.spec),
            clients=tuple(record.clients),
            iterations=[iteration_for_user(i, offboard) for i in iterations],
            error=record.error,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
        )

    @property
    def value(self) -> Any:
        """The off-board output of the last finished iteration (None before the first)."""
        return self.iterations[-1].value if self.iterations else None

    @property
    def done(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "error": self.error,
            "clients": list(self.clients),
            "spec": self.spec,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "iterations": [i.to_wire() for i in self.iterations],
        }

    def summary(self, width: int = 100) -> str:
        name = self.spec.get("name", "")
        lines = [
            f"assignment {self.id} ({name}): {self.status}, "
            f"{len(self.iterations)} iteration(s) on {len(self.clients)} client(s)"
        ]
        if self.error:
            lines.append(f"  error: {self.error}")
        for it in self.iterations:
            took = it.finished_at - it.started_at
            counts = (
                f"kept {len(it.onboard)}, discarded {len(it.discarded)}, "
                f"missing {len(it.missing)}, failed {len(it.failed)}"
            )
            lines.append(f"  iteration {it.index}: {counts}, {took:.2f}s ({it.ended_by})")
            lines.append(f"    value: {_short(it.value, width)}")
            if it.error:
                lines.append(f"    off-board error: {it.error}")
            for cid, why in list(it.failed.items())[:5]:
                lines.append(f"    client {cid} failed: {_short(why, width)}")
            if it.missing:
                lines.append(f"    missing: {list(it.missing)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython
        p.text(self.summary())


def _short(value: Any, width: int) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."
