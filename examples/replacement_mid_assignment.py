"""Active-code replacement: a new on-board version deployed while an assignment runs.

    python examples/replacement_mid_assignment.py [--redis-url URL]

Version 1 (examples/modules/mean_speed.py) is deployed and a 40-iteration assignment with
on-board ``custom`` starts. After its third iteration, version 2
(examples/modules/moving_mean_speed.py) is deployed to the same clients. Nothing restarts: the
next iterations run on version 2, and every on-board result says which version produced it
(``iteration.versions``). At the end a rollback restores version 1.
"""

from __future__ import annotations

from itertools import groupby

from common import connect, live_clients, module, short

from oodida_user import IterationResult

SPEC = {
    "name": "Typical speed, swapped mid-assignment",
    "mode": "measurement",
    "clients": "all",
    "signals": "speed",
    "onboard": "custom",
    "offboard": "average",
    "frequency": 10,
    "samples": 600,
    "iterations": 40,
}


def main() -> None:
    with connect(__doc__ or "") as o:
        clients = live_clients(o)
        v1 = o.deploy_onboard(module("mean_speed.py"), clients=clients).wait(timeout=60).version
        names = {v1: "v1 mean_speed.py"}
        print(f"v1 = mean_speed.py        {short(v1)} on clients {clients}")
        a = o.submit(SPEC)
        print(f"assignment {a.id} running: {SPEC['iterations']} iterations")
        v2 = None
        for it in a.iterations(timeout=300):
            if it.index == 2:
                v2 = (
                    o.deploy_onboard(module("moving_mean_speed.py"), clients=clients).wait(timeout=60).version
                )
                names[v2] = "v2 moving_mean_speed.py"
                print(f"v2 = moving_mean_speed.py {short(v2)} deployed after iteration {it.index}")
        result = a.result()

        def version_of(it: IterationResult) -> str:
            return ", ".join(names.get(v, short(v)) for v in sorted(set(it.versions.values())))

        print("which iterations ran on which version (iteration.versions):")
        for version, group in groupby(result.iterations, key=version_of):
            its = list(group)
            values = ", ".join(f"{it.value:.1f}" for it in its[:4]) + (", ..." if len(its) > 4 else "")
            print(f"  iterations {its[0].index:>2}-{its[-1].index:<2} on {version}: fleet average {values}")
        indices = [it.index for it in result.iterations]
        intact = indices == list(range(SPEC["iterations"]))
        print(f"{len(indices)} iterations, none lost or repeated: {'yes' if intact else 'NO'}")
        swapped = v2 is not None and any(v2 in it.versions.values() for it in result.iterations)
        print(f"replaced mid-assignment: {'yes' if swapped else 'no'} ({result.status})")

        now = o.rollback_onboard(clients)
        print(f"rolled back: clients now on {sorted({names.get(v or '', str(v)) for v in now.values()})}")
        check = o.submit({**SPEC, "iterations": 1}).wait(timeout=120, progress=False).iterations[0]
        print(f"a new assignment after the rollback runs on {version_of(check)}")
        if not (intact and swapped and result.status == "done"):
            raise SystemExit(1)


if __name__ == "__main__":
    main()
