"""Typed reports: the JSON written by earlier versions (CI parses it) reads back and writes out
with the same keys in the same order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vae_export.errors import CheckFailed, VAEExportError
from vae_export.reports import BenchReport, VerifyReport

V1 = Path(__file__).parent / "data" / "v1"


def test_verify_report_round_trips_v1():
    data = json.loads((V1 / "verify.json").read_text())
    report = VerifyReport.from_json(data)
    assert report.passed and len(report.checks) == 15 and report.checks[0].graph == "encoder"
    assert json.dumps(report.to_json()) == json.dumps(data)
    report.raise_if_failed()  # passes: no exception


def test_verify_report_knows_it_failed():
    data = json.loads((V1 / "verify.json").read_text())
    data["checks"][3]["passed"] = False
    report = VerifyReport.from_json(data)
    assert not report.passed and report.to_json()["passed"] is False and report.summary()["failed"] == 1
    with pytest.raises(CheckFailed, match="parity failed: 1 of 15 checks"):
        report.raise_if_failed()
    data["integrity"][1]["sha256_ok"] = False
    with pytest.raises(CheckFailed, match="sha256 of decoder.onnx does not match"):
        VerifyReport.from_json(data).raise_if_failed()


def test_bench_report_round_trips_v1():
    data = json.loads((V1 / "bench.json").read_text())
    report = BenchReport.from_json(data)
    assert {r.engine for r in report.results} == {"onnxruntime", "torch"}
    assert json.dumps(report.to_json()) == json.dumps(data)
    manifest = json.loads((V1 / "manifest.json").read_text())
    assert report.summary() == manifest["bench"]


def test_bench_report_rows_must_be_complete():
    with pytest.raises(VAEExportError, match=r"results\[0\]: missing .*p50_ms"):
        BenchReport.from_json({"results": [{"graph": "decoder"}]})
    with pytest.raises(VAEExportError, match="no 'results' list"):
        BenchReport.from_json({"results": 3})


def test_contract_document_lists_what_the_code_writes():
    """docs/contract.md stays in step with the code: every variant, every report key."""
    from vae_export.variants import LISTED_VARIANTS

    doc = (Path(__file__).parents[1] / "docs" / "contract.md").read_text()
    for variant in LISTED_VARIANTS:
        assert f"| `{variant}` |" in doc, variant
    verify = json.loads((V1 / "verify.json").read_text())
    bench = json.loads((V1 / "bench.json").read_text())
    for key in [*verify, *verify["checks"][0], *bench, *bench["results"][0], *bench["env"]]:
        assert f'"{key}"' in doc, key
