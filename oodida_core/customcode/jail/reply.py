"""The parent's check of what a call process sends back: nothing from the jail is trusted.

A reply is read at most ``reply_limit(policy)`` bytes long (``server.read_frame``) and then
checked here as if it came from the network.
"""

from __future__ import annotations

import json

from oodida_core.customcode.check import ENTRY_POINT, CodePolicy
from oodida_core.customcode.results import check_result
from oodida_core.protocol.errors import CustomCodeError
from oodida_core.protocol.text import shorten

MiB = 1024 * 1024
PRINT_LIMIT = 4096  # characters of print() output kept per call (the call process cuts there)
KINDS = frozenset({"raised", "result", "rejected", "memory"})
TRUNCATED = "\n[output truncated]"


class CustomCodeFailure(CustomCodeError):
    """Running custom code failed. ``kind``: raised (the code raised), result (bad return value),
    rejected (failed the checks), timeout, memory, crash, unavailable (no sandbox process or a
    jail below the operator's minimum), reply (the jail sent something that is not a reply)."""

    def __init__(self, message: str, kind: str = "raised") -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.kind))


def reply_limit(policy: CodePolicy) -> int:
    return policy.max_result_bytes + 8 * PRINT_LIMIT + 4096


def _mib(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n / MiB:.1f} MiB"


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def check_reply(data: bytes, policy: CodePolicy) -> tuple[object, str]:
    """A call process's reply, checked as if it came from the network: strict JSON (no NaN or
    infinity), an object of exactly the expected keys, the result within the contract's types,
    depth and size, printed text and error messages of bounded length. Raises
    CustomCodeFailure: the code's own error, or kind ``reply`` for anything malformed."""
    limit = reply_limit(policy)
    if len(data) > limit:
        raise CustomCodeFailure(
            f"the reply of custom code is {len(data):,} bytes; at most {limit:,}", "reply"
        )
    try:
        reply = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise CustomCodeFailure(
            f"the reply of custom code is not valid JSON ({str(exc)[:80]})", "reply"
        ) from None
    if not isinstance(reply, dict):
        raise CustomCodeFailure("the reply of custom code is not a JSON object", "reply")
    if set(reply) == {"error", "kind"}:
        error, kind = reply["error"], reply["kind"]
        if not isinstance(error, str) or kind not in KINDS:
            raise CustomCodeFailure("the reply of custom code holds a malformed error", "reply")
        error = shorten(error, 2000)
        if kind == "memory":
            error = f"{ENTRY_POINT} used more than {_mib(policy.memory_limit)} and was stopped"
        raise CustomCodeFailure(error, kind)
    if set(reply) != {"ok", "out"} or not isinstance(reply["out"], str):
        raise CustomCodeFailure("the reply of custom code has the wrong shape", "reply")
    if len(reply["out"]) > PRINT_LIMIT + len(TRUNCATED):
        raise CustomCodeFailure("the reply of custom code holds too much printed output", "reply")
    try:
        value = check_result(reply["ok"], policy)
    except CustomCodeError as exc:
        raise CustomCodeFailure(f"the result of custom code is not allowed: {exc}", "result") from None
    return value, reply["out"]
