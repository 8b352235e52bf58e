"""The README's commands work as written: its shell blocks, run in order in a fresh copy of the
repository from a plain shell (no virtual environment on PATH until the README activates it),
each command succeeding (or failing where its comment says `# fails`; a status that a `$ echo $?`
shows is compared as its output), each `console` block printing what the README shows, and
`git status` clean at the end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline_copy import copy_project, pipeline_env

pytest_plugins = ["default_pipeline"]

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Commands the test does not run: the set-up that made this test's .venv (CI runs `make test`
# on a fresh clone), and servers that run until Ctrl-C.
NOT_RUN = ("make ", "torchtrack ui", "torchtrack serve", "curl ", "mlflow models serve", "tensorboard ")
# The pipeline commands the README must show, and so this test runs.
PIPELINE = ("dvc repro", "dvc exp run", "dvc exp show", "dvc metrics show")
PIPELINE += ("torchtrack predict", "torchtrack compare")


@dataclass
class Command:
    text: str
    expected_output: list[str] | None  # a console block's, compared; None: not compared
    fails: bool | None  # the README says it fails (`# fails` comment); None: `echo $?` shows it


def readme_commands(markdown: str) -> list[Command]:
    """The commands of the README's ```sh and ```console blocks, in order."""
    commands: list[Command] = []
    for kind, body in re.findall(r"^```(sh|console)\n(.*?)^```$", markdown, re.MULTILINE | re.DOTALL):
        lines = body.splitlines()
        while lines:
            line = lines.pop(0)
            if kind == "console":
                if not line.startswith("$ "):
                    commands[-1].expected_output.append(line)
                    continue
                line = line[2:]
            while line.endswith("\\") and lines:
                line = line[:-1] + lines.pop(0).strip()
            text, _, comment = line.partition(" #")
            if text.strip() and not text.lstrip().startswith("#"):
                fails = comment.strip().startswith("fails")
                if text.strip() == "echo $?" and commands:
                    commands[-1].fails = None  # its status is what the echo prints, compared
                commands.append(Command(text.strip(), [] if kind == "console" else None, fails))
    return commands


def transcript_script(commands: list[Command]) -> str:
    """One bash script running every command, each between markers that carry its exit status;
    `$?` still reaches the next command, as in a terminal."""
    lines = ["exec 2>&1", "__status=0"]
    for number, command in enumerate(commands):
        lines += [f"printf '\\n@@begin {number}\\n'", "(exit $__status)", command.text]
        lines += ["__status=$?", f"printf '\\n@@end {number} %d\\n' $__status"]
    return "\n".join(lines) + "\n"


def plain_shell_env(repo: Path) -> dict[str, str]:
    """A new terminal's environment: no virtual environment, this test's .venv not on PATH."""
    env = pipeline_env(repo)
    del env["PYTHONPATH"]  # the copy's .venv is this checkout's, whose package is the same tree
    env.pop("VIRTUAL_ENV", None)
    bin_dir = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p and p != bin_dir)
    return env


def test_the_readme_parser_reads_commands_outputs_and_expected_failures():
    commands = readme_commands(
        "```sh\n. .venv/bin/activate\n# a comment\ndvc exp run -S x=1   # fails: why\n```\n"
        "```console\n$ echo a \\\n  b\na b\n$ echo $?\n0\n```\n```text\nnot a command\n```\n"
    )
    assert [(c.text, c.expected_output, c.fails) for c in commands] == [
        (". .venv/bin/activate", None, False),
        ("dvc exp run -S x=1", None, True),
        ("echo a b", ["a b"], None),
        ("echo $?", ["0"], False),
    ]


def run_transcript(commands: list[Command], cwd: Path, env: dict[str, str]) -> list[tuple[str, int]]:
    """Each command's output (stdout and stderr) and exit status, from one bash session."""
    result = subprocess.run(
        ["bash", "--noprofile", "--norc"],
        input=transcript_script(commands),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    found = re.findall(r"@@begin (\d+)\n(.*?)\n?@@end \1 (\d+)\n", result.stdout, re.DOTALL)
    assert len(found) == len(commands), result.stdout[-3000:]
    return [(output.rstrip("\n"), int(status)) for _, output, status in found]


def test_the_transcript_keeps_each_output_and_status_and_passes_the_status_on(tmp_path):
    commands = readme_commands("```console\n$ cd /\n$ false\n$ echo $?\n1\n$ pwd; printf x\n```\n")
    assert run_transcript(commands, tmp_path, dict(os.environ)) == [("", 0), ("", 1), ("1", 0), ("/\nx", 0)]


@pytest.mark.slow
def test_every_pipeline_command_of_the_readme_works_as_written_in_a_fresh_copy(default_pipeline, tmp_path):
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file():
        pytest.skip("the tests do not run in a virtual environment, so there is no .venv to activate")
    repo = copy_project(default_pipeline, tmp_path / "repo")  # a fresh clone after `make run`
    (repo / ".venv").symlink_to(venv)  # what `make setup` would have made there
    commands = [c for c in readme_commands(README.read_text()) if not c.text.startswith(NOT_RUN)]
    for needed in PIPELINE:
        assert any(c.text.startswith(needed) for c in commands), f"the README shows no `{needed}`"

    outputs = run_transcript(commands, repo, plain_shell_env(repo))
    for command, (output, status) in zip(commands, outputs, strict=True):
        said = f"$ {command.text}\n{output}"
        if command.fails is not None:
            assert (status != 0) == command.fails, f"exit status {status}:\n{said}"
        if command.expected_output is not None:
            printed = [line.rstrip() for line in output.splitlines()]
            assert printed == [line.rstrip() for line in command.expected_output], said
    # Back where it started: the README's recovery restored every file, and what it wrote is ignored
    # (.venv here is this test's link, which `.venv/` does not match).
    status = ["git", "status", "--porcelain", "--", ".", ":!.venv"]
    assert subprocess.run(status, cwd=repo, capture_output=True, text=True, check=True).stdout == ""
