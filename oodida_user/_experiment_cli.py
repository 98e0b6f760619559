"""``oodida experiment``: run an A/B experiment from a spec file, or read one again by id.

oodida experiment SPEC.json --variant A=a.py --variant B=builtin [--split A=0.5,B=0.5]
                  [--metric SIGNAL] [--seed N] [--test welch|mannwhitney] [--json]
oodida experiment SPEC.json          # the JSON form: the spec holds an experiment block
oodida experiment results ID [--metric SIGNAL] [--test T] [--confidence C] [--json]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from oodida_core.protocol.errors import OodidaError

from ._waiting import EXIT_FAILED, read_spec_file
from ._waiting import print_json as _print_json
from ._waiting import say as _say
from .client import Oodida
from .experiment import from_json
from .experiment_result import ExperimentResult


def _read_spec(path: str) -> dict[str, Any]:
    spec = read_spec_file(path)
    if not isinstance(spec, dict):
        raise OodidaError(f"{path} must hold a JSON object (an assignment spec)")
    return spec


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        for part in item.split(",") if what == "--split" else [item]:
            name, eq, value = part.partition("=")
            if not eq or not name or not value:
                raise OodidaError(f"{what} takes NAME=VALUE, not {part!r:.60}")
            out[name] = value
    return out


def _fractions(items: list[str]) -> dict[str, float] | None:
    if not items:
        return None
    try:
        return {name: float(value) for name, value in _pairs(items, "--split").items()}
    except ValueError:
        raise OodidaError("--split takes fractions, e.g. --split A=0.3,B=0.7") from None


def _shown(result: ExperimentResult, as_json: bool) -> int:
    if as_json:
        _print_json(result.to_dict())
    else:
        _say(result.summary())
    return EXIT_FAILED if "failed" in result.statuses.values() else 0


def cmd_experiment(args: argparse.Namespace) -> int:
    target: list[str] = args.target
    if target[0] == "results":
        if len(target) != 2:
            raise OodidaError("usage: oodida experiment results ID")
        with Oodida(args.redis_url, args.user, token=args.token) as o:
            result = o.experiment_result(
                target[1], metric=args.metric, test=args.test, confidence=args.confidence
            )
            return _shown(result, args.json)
    if len(target) != 1:
        raise OodidaError("usage: oodida experiment SPEC.json [--variant NAME=FILE ...] (or: results ID)")
    raw = _read_spec(target[0])
    options: dict[str, Any] = {}
    if args.variant:
        variants: Any = _pairs(args.variant, "--variant")
        spec = raw
    else:
        spec, options = from_json(raw, Path(target[0]).resolve().parent)
        variants = options.pop("variants")
    for key, value in (
        ("split", _fractions(args.split)),
        ("metric", args.metric),
        ("seed", args.seed),
        ("test", args.test),
        ("confidence", args.confidence),
    ):
        if value is not None:
            options[key] = value
    with Oodida(args.redis_url, args.user, token=args.token) as o:
        experiment = o.experiment(spec, variants, **options)
        if not args.json:
            print(f"experiment {experiment.id} (seed {experiment.seed}): running", flush=True)
        return _shown(experiment.wait(timeout=args.timeout, progress=False), args.json)


def add_experiment_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "experiment",
        parents=[common],
        help="an A/B experiment: one assignment per variant, each on its own random group",
        description="Run an A/B experiment (SPEC.json with --variant NAME=FILE|builtin, at least two; or "
        "a spec holding an experiment block with variants, whose relative module paths are read next "
        "to the file) and print each variant's metric per iteration and overall, the difference from "
        "the first variant with its confidence interval, and the test. 'results ID' reads it again.",
    )
    p.add_argument("target", nargs="+", metavar="SPEC.json | results ID")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FILE", help="FILE or builtin")
    p.add_argument("--split", action="append", default=[], metavar="A=0.5,B=0.5", help="fractions")
    p.add_argument("--metric", help="the signal (entry of each on-board value) compared")
    p.add_argument("--seed", type=int, help="the seed of the random split (default: drawn and printed)")
    p.add_argument("--test", choices=["welch", "mannwhitney"], help="default welch")
    p.add_argument("--confidence", type=float, help="of the intervals and the test (default 0.95)")
    p.add_argument("--timeout", type=float, help="seconds to wait for the assignments")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_experiment)


__all__ = ["add_experiment_parser", "cmd_experiment"]
