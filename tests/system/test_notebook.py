"""The tutorial notebook runs headless against a live system and shows what it promises: a
progress widget, the HTML result table, a plot, and a code swap with both versions; without
ipywidgets the progress shows as text updated in place.

The kernel is this interpreter (a kernelspec written into tmp_path), and every directory
Jupyter, IPython and matplotlib write to is inside tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook

from oodida_ops.local import LocalSystem
from oodida_user import Oodida
from oodida_user.display import assignment_html

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "examples" / "tutorial.ipynb"
KERNEL = "oodida-test-python"
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@pytest.fixture()
def jupyter_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernelspec for this interpreter, and Jupyter's, IPython's and matplotlib's
    directories in tmp_path; returns the notebooks' working directory."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "oodida test", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(kernel))
    dirs = {
        "JUPYTER_PATH": tmp_path / "jupyter",
        "JUPYTER_DATA_DIR": tmp_path / "jupyter-data",
        "JUPYTER_CONFIG_DIR": tmp_path / "jupyter-config",
        "JUPYTER_RUNTIME_DIR": tmp_path / "jupyter-runtime",
        "IPYTHONDIR": tmp_path / "ipython",
        "MPLCONFIGDIR": tmp_path / "matplotlib",
        "XDG_CACHE_HOME": tmp_path / "cache",
        "XDG_CONFIG_HOME": tmp_path / "config",
        "HOME": tmp_path / "home",
    }
    for name, path in dirs.items():
        path.mkdir(exist_ok=True)
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    work = tmp_path / "work"
    work.mkdir()
    return work


def run(nb: NotebookNode, work: Path, system: LocalSystem, user: str) -> NotebookNode:
    """``nb`` executed in ``work`` by a kernel that has the system's URL, a user and a token."""
    env = {
        **os.environ,
        "OODIDA_REDIS_URL": system.url,
        "OODIDA_USER": user,
        "OODIDA_TOKEN": system.token(user),
        "PYTHONPATH": str(ROOT),
    }
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=180,
        resources={"metadata": {"path": str(work)}},
        store_widget_state=True,
    )
    client.execute(env=env)
    return nb


def outputs(cell: NotebookNode) -> list[dict[str, Any]]:
    return [dict(o) for o in cell.get("outputs", [])]


def text_of(cell: NotebookNode) -> str:
    """Every text the cell showed: streams, text/plain and text/html."""
    parts = []
    for out in outputs(cell):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        data = out.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/html", "")]
    return "\n".join(parts)


def cell_with(nb: NotebookNode, source: str) -> NotebookNode:
    matches = [c for c in nb.cells if c.cell_type == "code" and source in c.source]
    assert len(matches) == 1, f"one code cell should contain {source!r}"
    return matches[0]


def test_tutorial_notebook_shows_progress_table_plot_and_both_versions_of_a_swap(
    system: LocalSystem, jupyter_env: Path
) -> None:
    stored = nbformat.read(TUTORIAL, as_version=4)
    assert all(
        not c.get("outputs") and not c.get("execution_count") for c in stored.cells if c.cell_type == "code"
    ), "the notebook is stored without outputs"
    nb = run(stored, jupyter_env, system, "notebook-tutorial")
    errors = [o for c in nb.cells for o in outputs(c) if o["output_type"] == "error"]
    assert errors == []

    waited = cell_with(nb, "a.wait(")
    widgets = [o for o in outputs(waited) if WIDGET in o.get("data", {})]
    assert len(widgets) == 1, "wait() drew one progress widget"
    models = nb.metadata["widgets"][WIDGET_STATE]["state"].values()
    texts = [str(m["state"]["value"]).replace("\u2007", " ") for m in models if "value" in m["state"]]
    shown = " | ".join(texts)
    assert "Average speed: 100%" in shown and " 3/3 " in shown, "the widget counted the three iterations"
    assert re.search(r"iteration 2: [1-5]/5 clients answered", shown), "and the last iteration's answers"

    table = text_of(next(c for c in nb.cells if c.source == "result"))
    assert "<table>" in table and "oodida-status-done" in table
    assert "3 iteration(s) on 5 client(s)" in table

    plotted = cell_with(nb, "result.plot()")
    assert any("image/png" in o.get("data", {}) for o in outputs(plotted)), "the plot shows as a PNG"

    framed = text_of(cell_with(nb, "pivot_table"))
    assert "speed" in framed and "rpm" in framed

    deployed = text_of(cell_with(nb, "report = o.deploy_onboard"))
    v1 = re.search(r"sha256:[0-9a-f]{12}", deployed)
    assert v1, deployed
    swapping = text_of(cell_with(nb, "a.iterations("))
    v2 = re.search(r"deployed version 2 \((sha256:[0-9a-f]{12})\) after iteration 1", swapping)
    assert v2, swapping
    assert v1.group() != v2.group(1)
    assert v1.group() in swapping and v2.group(1) in swapping, "each iteration names its version"
    swapped = text_of(cell_with(nb, "swap = a.result()"))
    assert "20 iteration(s) on 5 client(s)" in swapped
    assert f"<td>{v1.group()}</td>" in swapped and f"<td>{v2.group(1)}</td>" in swapped
    by_version = text_of(cell_with(nb, 'groupby("version")'))
    assert "version 1 (&gt; 100 km/h)" in by_version and "version 2 (&gt; 120 km/h)" in by_version
    assert "mean_share" in by_version
    rolled = text_of(cell_with(nb, "rollback_onboard"))
    assert "version 1 (> 100 km/h)" in rolled and "version 2" not in rolled


def test_without_ipywidgets_the_progress_is_text_updated_in_place(
    system: LocalSystem, jupyter_env: Path
) -> None:
    nb = new_notebook(
        cells=[
            new_code_cell('import sys\nsys.modules["ipywidgets"] = None  # as if not installed'),
            new_code_cell(
                "import os\nfrom oodida_user import Oodida\n"
                'o = Oodida(os.environ["OODIDA_REDIS_URL"], os.environ["OODIDA_USER"], '
                'token=os.environ["OODIDA_TOKEN"])\n'
                'spec = {"name": "Text progress", "mode": "measurement", "clients": "all", '
                '"signals": "speed", "onboard": "average", "offboard": "average", '
                '"frequency": 10, "samples": 100, "iterations": 2}\n'
                "result = o.submit(spec).wait(timeout=120)\n"
                "result.status"
            ),
        ]
    )
    run(nb, jupyter_env, system, "notebook-text-progress")
    shown = outputs(nb.cells[1])
    assert [o for o in shown if o["output_type"] == "error"] == []
    assert not any(WIDGET in o.get("data", {}) for o in shown)
    progress = [o for o in shown if o["output_type"] == "display_data"]
    assert len(progress) == 1, "one display, updated in place"
    text = progress[0]["data"]["text/plain"]
    assert re.fullmatch(
        r"Text progress: 2/2 iteration\(s\) \[\d+\.\ds\], iteration 1: 5/5 clients answered", text
    )
    assert "<progress value='2' max='2'></progress>" in progress[0]["data"]["text/html"]
    assert shown[-1]["data"]["text/plain"] == "'done'"


def test_running_finished_and_folded_assignments_render_as_html_with_progress_and_result(
    oodida: Oodida,
) -> None:
    spec = {
        "name": "Html <assignment>",
        "mode": "measurement",
        "clients": "all",
        "signals": "speed",
        "onboard": "average",
        "offboard": "average",
        "frequency": 10,
        "samples": 100,
        "iterations": 0,  # until cancelled: it is running while rendered
        "keep": 2,
    }
    a = oodida.submit(spec)
    next(a.iterations(timeout=60))
    running = assignment_html(a)
    assert "Html &lt;assignment&gt;" in running and "<assignment>" not in running
    assert "class='oodida-status-running'" in running
    assert re.search(r"running</b>, \d+/\? iteration\(s\)", running), running
    a.cancel()
    ended = assignment_html(a)
    assert "class='oodida-status-cancelled'" in ended and "<table>" in ended
    done = oodida.submit({**spec, "iterations": 5})
    result = done.wait(timeout=60, progress=False)
    # keep 2: iterations 0-2 are folded into one summary before the end is announced
    assert result.folded is not None and (result.folded.first, result.folded.last) == (0, 2)
    assert [i.index for i in result.iterations] == [3, 4]
    assert result.totals()["iterations"] == 5 and result.totals()["kept"] == 25
    line = "iterations 0-2 folded: 3 iteration(s), kept 15, discarded 0, missing 0, failed 0"
    assert f"\n  {line}; speed min " in result.summary()
    page = assignment_html(done)
    assert "done</b>, 5/5 iteration(s)<br><progress value='5' max='5'></progress>" in page
    assert "5 iteration(s) on 5 client(s)" in page
    assert line in page
    assert page.count("<td>ok</td>") == 2, "one row per kept iteration"


def test_a_failed_iteration_shows_failed_with_its_failures_counted_in_text_and_html(
    system: LocalSystem, tmp_path: Path
) -> None:
    module = tmp_path / "divide.py"  # passes the dry run (100 readings), fails on 200
    module.write_text("def custom_code(x):\n    return 1 / (len(x) - 200)\n")
    with Oodida(system.url, user="display-failures", token=system.token("display-failures")) as o:
        o.deploy_onboard(module, clients="all").wait(timeout=60)
        spec = {
            "name": "Divides by zero",
            "mode": "measurement",
            "clients": "all",
            "signals": "speed",
            "onboard": "custom",
            "offboard": "average",
            "frequency": 10,
            "samples": 200,
            "iterations": 1,
        }
        result = o.submit(spec).wait(timeout=60, progress=False)
    assert result.status == "failed" and result.error
    assert [c.status for c in result.counts] == ["failed"]
    text = result.summary(failures=2)
    assert "  iteration 0: FAILED — kept 0, discarded 0, missing 0, failed 5, " in text
    failures = [
        line for line in text.splitlines() if re.match(r"    client \d failed: .*ZeroDivisionError", line)
    ]
    assert len(failures) == 2 and "    and 3 more failed client(s)" in text
    assert f"  error: {result.error}" in text
    page = result._repr_html_()
    assert "class='oodida-status-failed'" in page and page.count("class='oodida-failed'") == 1
    listed = page[page.index("class='oodida-failures'") :]  # the row under the failed iteration
    assert len(re.findall(r"client \d failed: ", listed)) == 5 and "more failed" not in page
    assert result.to_dict()["iterations"][0]["status"] == "failed"
