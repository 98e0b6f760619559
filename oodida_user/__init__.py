"""The analyst's library for OODIDA on Celery and Redis."""

from __future__ import annotations

from oodida_core.protocol.errors import (
    AssignmentTimeout,
    AuthError,
    BadArgument,
    CustomCodeError,
    OodidaError,
    QuotaError,
    SpecError,
    UnknownAssignment,
)
from oodida_core.protocol.wire import ClientInfo, IterationResult

from .assignment import AssignmentInterrupted
from .canary_rules import CanaryReport, Guard
from .client import Assignment, Oodida, StreamWarning
from .deploy import Deployment, DeployReport
from .experiment import Experiment
from .experiment_result import ExperimentResult
from .progress import AssignmentProgress
from .results import IterationCounts, Result

__all__ = [
    "Assignment",
    "AssignmentInterrupted",
    "AssignmentProgress",
    "AssignmentTimeout",
    "AuthError",
    "BadArgument",
    "CanaryReport",
    "ClientInfo",
    "CustomCodeError",
    "DeployReport",
    "Deployment",
    "Experiment",
    "ExperimentResult",
    "Guard",
    "IterationCounts",
    "IterationResult",
    "Oodida",
    "OodidaError",
    "QuotaError",
    "Result",
    "SpecError",
    "StreamWarning",
    "UnknownAssignment",
]
