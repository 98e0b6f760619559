"""Deploying custom code from the analyst's machine, and following a deployment.

``LocalCheck`` reads a module and checks it here before it is sent (the static check, then a
dry run in a sandbox of its own, built at the first check); ``Deployment`` follows what the
cloud and the clients did with it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from oodida_core.customcode.check import CheckedModule, CodePolicy, check_source
from oodida_core.customcode.sandbox import Sandbox, dry_run
from oodida_core.protocol.errors import BadArgument, CustomCodeError, OodidaError
from oodida_core.protocol.text import printable
from oodida_core.protocol.wire import DeploymentRecord, Role

from .replies import raise_for

if TYPE_CHECKING:
    from .client import Oodida


class LocalCheck:
    """The analyst's side of a deployment: read a module and check it as the cloud will. It
    owns the sandbox of the dry run, built at the first check and closed by ``close``."""

    def __init__(self, policy: CodePolicy) -> None:
        self.policy = policy
        self._sandbox: Sandbox | None = None

    def module(self, filename: str | os.PathLike[str], role: Role) -> CheckedModule:
        """The module in ``filename`` (read as ``Path.read_text`` would, no more than the
        policy's limit), checked and dry-run as ``role`` code; CustomCodeError if it fails."""
        path = Path(filename)
        limit = self.policy.max_source_bytes
        try:
            with path.open("rb") as fh:  # read no more than a module may hold, whatever the file
                data = fh.read(limit + 1)
            source = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text
        except FileNotFoundError:
            raise CustomCodeError(f"{path}: no such file") from None
        except UnicodeDecodeError:
            raise CustomCodeError(f"{path}: not a UTF-8 text file") from None
        except OSError as exc:
            raise CustomCodeError(f"{path}: cannot read it ({exc.strerror})") from None
        except ValueError as exc:  # a name the operating system cannot take (lone surrogates)
            raise CustomCodeError(f"{str(path)!r:.100}: not a usable file name ({exc})") from None
        if len(data) > limit:
            raise CustomCodeError(f"{path.name}: more than {limit} bytes; the limit is {limit} bytes")
        checked = check_source(source, path.name, self.policy)
        dry_run(checked, role, self.policy, self._local_sandbox())
        return checked

    def _local_sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(max_children=1)
        return self._sandbox

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()


@dataclass(frozen=True)
class DeployReport:
    """What became of a deployment: the version, who accepted it, who refused it and why,
    and which targets have not answered yet (offline clients get it when they come back)."""

    id: str
    role: str
    version: str
    accepted: tuple[int | str, ...]
    rejected: dict[int, str] = field(default_factory=dict)
    pending: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.pending

    def __str__(self) -> str:
        where = "the cloud" if self.role == "offboard" else f"{len(self.accepted)} client(s)"
        lines = [f"deployment {self.id}: {self.version} accepted by {where}"]
        if self.role == "onboard" and self.accepted:
            lines.append(f"  accepted: {list(self.accepted)}")
        for cid, why in sorted(self.rejected.items()):
            lines.append(f"  client {cid} refused: {why}")
        if self.pending:
            lines.append(f"  pending (offline or not answered yet): {list(self.pending)}")
        return printable("\n".join(lines), newlines=True)  # the clients' reasons


def report_from(record: DeploymentRecord) -> DeployReport:
    accepted: tuple[int | str, ...]
    if record.role == "offboard":
        accepted = ("cloud",) if record.status == "done" else ()
    else:
        accepted = tuple(sorted(c for c, v in record.verdicts.items() if v.accepted))
    rejected = {c: v.reason for c, v in sorted(record.verdicts.items()) if not v.accepted}
    pending = tuple(c for c in record.targets if c not in record.verdicts)
    return DeployReport(record.id, record.role, record.version, accepted, rejected, pending)


class Deployment:
    """A deployment under way; ``wait()`` gives its report."""

    def __init__(
        self,
        oodida: Oodida,
        deploy_id: str,
        version: str,
        role: str,
        filename: str = "",
        request_id: str | None = None,
    ) -> None:
        self.o = oodida
        self.id = deploy_id
        self.version = version
        self.role = role
        self.filename = filename
        self._request_id = request_id  # the deploy request, until the cloud answered it
        self._created = time.time()

    def __repr__(self) -> str:
        return f"<Deployment {self.id} {self.role} {self.version[:19]}>"

    def record(self) -> DeploymentRecord:
        """The deployment as stored; while no cloud worker took the request yet, ``pending``.
        AuthError when the cloud refused the user."""
        if self._request_id is not None:
            reply = self.o.requests.await_reply(self._request_id, None)
            if reply is None:
                return DeploymentRecord(
                    id=self.id,
                    user=self.o.user,
                    role="offboard" if self.role == "offboard" else "onboard",
                    filename=self.filename,
                    status="pending",
                    created_at=self._created,
                )
            self._request_id = None
            raise_for(reply)
        self.o.authenticate()
        record = self.o.codestore.deployment(self.id)
        if record is None or record.user != self.o.user:
            raise OodidaError(f"no deployment {self.id!r} of user {self.o.user!r}")
        return record

    def report(self) -> DeployReport:
        """The report as it stands (targets that did not answer yet are pending)."""
        record = self.record()
        if record.status == "failed":
            raise CustomCodeError(f"the cloud refused the module: {record.error}")
        return report_from(record)

    def wait(self, timeout: float = 30.0) -> DeployReport:
        """Until every target answered, or ``timeout``: then the silent ones are pending.
        CustomCodeError when the cloud refused the module; OodidaError when no cloud worker
        took the deployment in time."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout):
            raise BadArgument(f"timeout must be a number of seconds, not {timeout!r:.40}")
        deadline = time.monotonic() + timeout
        after = "0"
        while True:
            record = self.record()
            if record.status == "failed":
                raise CustomCodeError(f"the cloud refused the module: {record.error}")
            if record.status == "done" or (
                record.status == "sent" and all(c in record.verdicts for c in record.targets)
            ):
                return report_from(record)
            left = deadline - time.monotonic()
            if left <= 0:
                if record.status == "pending":
                    raise OodidaError(
                        f"no cloud worker took deployment {self.id} within {timeout:.0f}s: "
                        "is oodida-cloud running? It stays queued until one does."
                    )
                return report_from(record)
            for entry in self.o.codestore.read_events(self.id, after, int(min(left, 1.0) * 1000) + 1):
                after = entry
