"""The README's Python example runs as written (it is the first code a user copies)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)  # it saves a model file
    namespace = {"__name__": "__readme__"}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "recall@10" in out and "cold" in out
    assert (tmp_path / "als.recinc").exists()


def test_readme_forget_example_runs_and_the_audit_finds_no_trace(tmp_path, monkeypatch):
    from recinc_plugins.cli import main

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    exec(compile(blocks[0].split("results = compare")[0], str(README), "exec"), namespace)
    assert main(["audit-forget", "als.recinc", "--user", "42"]) == 1  # before: found
    exec(compile(blocks[1], str(README), "exec"), namespace)
    assert namespace["report"].users == 1
    command = re.search(r"recinc (audit-forget [^#\n]*)", README.read_text()).group(1).split()
    assert main(command) == 0
