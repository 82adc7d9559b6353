"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_python_examples():
    assert len(python_blocks()) >= 1


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    # Twice in a row, in the same folder: a user reruns an example as it is.
    for _ in range(2):
        namespace: dict = {}
        for block in python_blocks():
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102


def tour_commands():
    """The ``medimg-fast`` lines of the README's command-line tour, as argument lists."""
    import shlex

    tour = README.read_text().split("## Command line: a tour", 1)[1]
    block = re.search(r"```sh\n(.*?)```", tour, flags=re.DOTALL).group(1)
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines()
            if line.startswith("medimg-fast ")]


def test_readme_cli_tour_runs(tmp_path):
    import os
    import subprocess
    import sys

    commands = tour_commands()
    assert len(commands) >= 5
    env = dict(os.environ, PYTHONPATH=str(README.parent / "src"))
    for args in commands + commands:  # twice in a row: a rerun works as the first run
        done = subprocess.run([sys.executable, "-m", "medimg_fast", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, (args, done.stderr[-2000:])
    assert (tmp_path / "demo-small" / "report.html").exists()
    assert (tmp_path / "predictions.csv").exists()
