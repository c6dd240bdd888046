"""Property-based tests (Hypothesis) of the reliability promise, on generated hostile input:
manifests, baselines, option values and runtime arguments.

The property is the promise itself: a bad input is exit 1 or 2 with one `Error:` line naming
the file or the option (no traceback, no internal error), and nothing in the artifacts
directory changes; a library call raises the project's own exception naming the argument.
Example counts are bounded (`EXAMPLES`) so that the module runs in about a minute on 2 cores.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import snapshot
from vae_export.cli import main
from vae_export.errors import VAEExportError
from vae_export.manifest import MANIFEST_NAME, Manifest
from vae_export.reports import BenchReport
from vae_export.runtime import VAE, RuntimeInputError

# Per test: small enough for CI (the whole module ~1 minute), large enough to reach every field.
EXAMPLES = {"library": 300, "cli": 100, "cli_slow": 25}
V1 = Path(__file__).parent / "data" / "v1"
FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]

# Any JSON value, small: what a hostile file can put where a field is expected.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON document (dict keys and list indices)."""
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """`document` with one value replaced, one key removed, or one value wrapped: the kind of
    damage (or attack) a travelling JSON file can carry."""
    data = json.loads(json.dumps(document))
    path = draw(st.sampled_from(_paths(data)))
    action = draw(st.sampled_from(["replace", "remove", "wrap"]))
    if not path:
        return draw(json_values) if action == "replace" else [data]
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if action == "remove" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "wrap":
        parent[path[-1]] = [parent[path[-1]]]
    else:
        parent[path[-1]] = draw(json_values)
    return data


def _one_error_line(result, *fragments: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.output, lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---- manifests -----------------------------------------------------------------------------------

V1_MANIFEST = json.loads((V1 / MANIFEST_NAME).read_text())


@settings(max_examples=EXAMPLES["library"], deadline=None, suppress_health_check=FIXTURES)
@given(document=mutated(V1_MANIFEST))
def test_manifest_read_is_valid_or_one_error_naming_file_and_field(document):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / MANIFEST_NAME
        path.write_text(json.dumps(document))
        try:
            manifest = Manifest.read(Path(d))
        except VAEExportError as exc:
            message = str(exc)
            assert message.startswith(str(path)) and len(message.splitlines()) == 1, message
            assert "field" in message or "not a valid manifest" in message, message
            return
        # accepted: every name is a plain file name, and it writes back as it read
        assert all("/" not in e.file and not e.file.startswith(".") for e in manifest.artifacts)
        assert 1 <= len(manifest.artifacts) and math.prod(manifest.model.image_shape) <= 1 << 28
        assert Manifest.from_json(manifest.to_json(), path) == manifest


@settings(max_examples=EXAMPLES["cli_slow"], deadline=None, suppress_health_check=FIXTURES)
@given(data=st.data())
def test_verify_on_a_generated_manifest_keeps_the_promise(exported_dir, tmp_path_factory, data):
    """Through the CLI on real artifacts, the exported manifest damaged one field at a time:
    exit 0, or 1/2 with one line and nothing in the directory changed."""
    artifacts = tmp_path_factory.mktemp("prop") / "artifacts"
    shutil.copytree(exported_dir, artifacts)
    document = data.draw(mutated(json.loads((artifacts / MANIFEST_NAME).read_text())))
    (artifacts / MANIFEST_NAME).write_text(json.dumps(document))
    before = snapshot(artifacts)
    result = CliRunner().invoke(main, ["verify", "--artifacts", str(artifacts), "--batch-sizes", "1"])
    if result.exit_code == 0:
        after = snapshot(artifacts)
        assert {k for k in after if after[k] != before.get(k)} <= {MANIFEST_NAME}  # the summary, nothing else
    else:
        assert result.exit_code in (1, 2), result.output
        _one_error_line(result)
        assert snapshot(artifacts) == before
    shutil.rmtree(artifacts.parent)


# ---- baselines ---------------------------------------------------------------------------------------

BASELINE = json.loads((V1 / "bench.json").read_text())
BASELINE_SMALL = {**BASELINE, "results": BASELINE["results"][:3]}


@settings(max_examples=EXAMPLES["library"], deadline=None)
@given(document=mutated(BASELINE_SMALL))
def test_baseline_read_is_valid_or_one_error(document):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "base.json"
        path.write_text(json.dumps(document))
        try:
            report = BenchReport.read(path)
        except VAEExportError as exc:
            assert str(exc).startswith(f"--baseline {path}") and len(str(exc).splitlines()) == 1, str(exc)
            return
        for row in report.results:  # what the gate reads is typed and finite
            assert isinstance(row.graph, str) and isinstance(row.batch, int) and math.isfinite(row.p50_ms)
            assert row.p50_ms >= 0 and hash(row.key()) is not None


@settings(max_examples=EXAMPLES["cli"], deadline=None, suppress_health_check=FIXTURES)
@given(document=mutated(BASELINE_SMALL))
def test_bench_with_a_generated_baseline(tmp_path_factory, document):
    """A bad baseline fails first (exit 1, naming --baseline and the file); a good one goes on
    to the next check (here: no manifest, exit 2). Nothing is written either way."""
    d = tmp_path_factory.mktemp("base")
    (d / "base.json").write_text(json.dumps(document))
    empty = d / "artifacts"
    empty.mkdir()
    result = CliRunner().invoke(main, ["bench", "--artifacts", str(empty), "--baseline", str(d / "base.json")])
    assert result.exit_code in (1, 2)
    line = _one_error_line(result)
    assert ("--baseline" in line and "base.json" in line) if result.exit_code == 1 else "no manifest" in line
    assert not any(empty.iterdir())


# ---- option values ----------------------------------------------------------------------------------

numbers_as_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e309", "", " ", "0x10", "1,2", "1_000"]),
    st.text(max_size=8),
)
OPTIONS = {
    ("bench", "--max-regression"): lambda v: math.isfinite(v) and v >= 1,
    ("bench", "--min-time"): lambda v: math.isfinite(v) and 0 <= v <= 600,
    ("verify", "--atol"): lambda v: math.isfinite(v) and v >= 0,
    ("verify", "--rtol"): lambda v: math.isfinite(v) and v >= 0,
    ("sample", "--seed"): None,
    ("bench", "--batch-sizes"): None,
    ("bench", "--threads"): None,
    ("bench", "--iterations"): None,
    ("sample", "-n"): None,
}


@settings(max_examples=EXAMPLES["cli"] * 3, deadline=None, suppress_health_check=FIXTURES)
@given(option=st.sampled_from(sorted(OPTIONS)), value=numbers_as_text)
def test_option_values_are_accepted_or_exit_2_naming_the_option(tmp_path_factory, option, value):
    """Against an empty directory, every command ends in exit 2: either the option is refused
    (its name in the message) or it is accepted and the missing artifacts are reported."""
    command, name = option
    empty = tmp_path_factory.mktemp("opt")
    args = [f"{name}={value}"] if name.startswith("--") else [name, value]
    result = CliRunner().invoke(main, [command, "--artifacts", str(empty), *args])
    assert result.exit_code == 2, result.output
    stderr = result.stderr.strip()
    assert "Traceback" not in result.output and "internal error" not in stderr
    refused = f"Invalid value for '{name}'" in stderr
    if not refused:
        _one_error_line(result, "not found" if command == "sample" else "no manifest")
        check = OPTIONS[option]
        if check is not None:
            assert check(float(value)), f"{name}={value!r} was accepted"
    assert not any(empty.iterdir())


# ---- runtime arguments ---------------------------------------------------------------------------------

anything = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=4),
                     st.lists(st.integers(0, 3), max_size=3))


@pytest.fixture(scope="module")
def vae(exported_dir):
    return VAE(exported_dir / "encoder.onnx", exported_dir / "decoder.onnx")


@settings(max_examples=EXAMPLES["library"], deadline=None, suppress_health_check=FIXTURES)
@given(method=st.sampled_from(["sample_n", "sample_seed", "steps", "samples", "score_seed"]), value=anything)
def test_runtime_arguments_are_valid_or_runtime_input_error(vae, method, value):
    x = np.full((1, 1, 28, 28), 0.5, np.float32)
    calls = {
        "sample_n": ("n", lambda: vae.decoder.sample(value, seed=0), lambda out: out.shape == (value, 1, 28, 28)),
        "sample_seed": ("seed", lambda: vae.decoder.sample(1, seed=value), lambda out: out.shape == (1, 1, 28, 28)),
        "steps": ("steps", lambda: vae.decoder.interpolate(np.zeros(32), np.ones(32), steps=value),
                  lambda out: out.shape == (value, 1, 28, 28)),
        "samples": ("samples", lambda: vae.anomaly_score(x, samples=value), lambda out: np.isfinite(out).all()),
        "score_seed": ("seed", lambda: vae.anomaly_score(x, seed=value), lambda out: np.isfinite(out).all()),
    }
    name, call, valid = calls[method]
    try:
        out = call()
    except RuntimeInputError as exc:
        assert str(exc).startswith(f"{name}: expected"), str(exc)
        return
    assert valid(out)


@settings(max_examples=EXAMPLES["library"], deadline=None, suppress_health_check=FIXTURES)
@given(z=st.one_of(
    st.lists(st.one_of(st.floats(), st.lists(st.floats(), max_size=3)), max_size=40),
    st.lists(st.lists(st.floats(width=32), min_size=32, max_size=32), min_size=1, max_size=3),
    anything,
))
def test_decode_of_arbitrary_input_is_valid_or_runtime_input_error(vae, z):
    try:
        out = vae.decoder.decode(z)
    except RuntimeInputError as exc:
        assert str(exc).startswith("z: expected") or str(exc).startswith("z: contains NaN"), str(exc)
        return
    assert out.shape == (len(z), 1, 28, 28) and np.isfinite(out).all()
