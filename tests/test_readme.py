"""Every Python snippet of the README runs, as written, on what the README says produced its
files; shell blocks marked for it run too. The snippets are read from README.md itself, so they
cannot drift from what is tested.

A block is marked by the HTML comment on the line before its fence (invisible on GitHub):

    <!-- readme-test: python artifacts=cond,m2 env=runtime-alone -->

`artifacts=`: the artifact sets (tests/conftest.py `runtime_sets`: flat, conv, cond, m2, kl) copied
to ./artifacts in a fresh working directory, one run each; `env=runtime-alone`: run with the
python of a venv holding only the vae-export-runtime wheel (the embedding snippets: they need no
torch); `shell`: a bash block, run with this environment's `vae-export` on PATH.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from conftest import run_checked

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<spec>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S)


def blocks() -> list[tuple[int, str, str, dict[str, str]]]:
    text = README.read_text()
    found = []
    for match in BLOCK.finditer(text):
        spec = match.group("spec")
        options = dict(part.split("=", 1) for part in spec.split() if "=" in part) if spec else {}
        kind = spec.split()[0] if spec else ""
        line = text.count("\n", 0, match.start("code"))
        found.append((line, match.group("lang"), match.group("code"), {"kind": kind, **options}))
    return found


MARKED = [b for b in blocks() if b[3]["kind"] in ("python", "shell")]


def test_every_python_block_is_run():
    unmarked = [line for line, lang, _, spec in blocks() if lang == "python" and spec["kind"] != "python"]
    assert not unmarked, f"README.md: python blocks at lines {unmarked} have no <!-- readme-test: python ... --> mark"
    assert sum(1 for b in MARKED if b[3]["kind"] == "python") >= 2


@pytest.mark.slow
@pytest.mark.parametrize("line, lang, code, spec", MARKED, ids=[f"README.md:{b[0]}" for b in MARKED])
def test_readme_block_runs(line, lang, code, spec, runtime_sets, request, tmp_path):
    python = request.getfixturevalue("alone_venv") if spec.get("env") == "runtime-alone" else Path(sys.executable)
    for kind in spec.get("artifacts", "flat").split(","):
        work = tmp_path / kind
        shutil.copytree(runtime_sets / kind, work / "artifacts")
        if spec["kind"] == "python":
            run_checked([str(python), "-c", code], work)
        else:
            env_path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
            run_checked(["bash", "-euo", "pipefail", "-c", code], work, env={"PATH": env_path, "HOME": str(work)})
