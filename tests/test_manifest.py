"""The manifest's one owner: what earlier versions wrote reads back and writes out unchanged,
and a malformed manifest is one error naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vae_export.errors import UsageError, VAEExportError
from vae_export.manifest import MANIFEST_NAME, Manifest

V1 = Path(__file__).parent / "data" / "v1"


def test_manifest_written_by_v1_round_trips_exactly(tmp_path):
    manifest = Manifest.read(V1)
    assert manifest.model.latent_shape == (32,) and manifest.model.image_shape == (1, 28, 28)
    assert [e.file for e in manifest.artifacts] == ["encoder.onnx", "decoder.onnx"]
    assert manifest.checkpoint(V1) == V1 / "vae.safetensors"
    manifest.write(tmp_path)
    assert (tmp_path / MANIFEST_NAME).read_text() == (V1 / MANIFEST_NAME).read_text()


def test_export_writes_the_v1_layout(exported_dir):
    written = json.loads((exported_dir / MANIFEST_NAME).read_text())
    v1 = json.loads((V1 / MANIFEST_NAME).read_text())
    assert list(written) == [k for k in v1 if k not in ("parity", "bench")]
    assert list(written["artifacts"][0]) == list(v1["artifacts"][0])
    assert list(written["model"]) == list(v1["model"])


def test_with_summary_keeps_everything_else(tmp_path):
    manifest = Manifest.read(V1).with_summary("parity", {"passed": False})
    manifest.write(tmp_path)
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert data["parity"] == {"passed": False} and data["bench"] == json.loads((V1 / MANIFEST_NAME).read_text())["bench"]


def _write(tmp_path: Path, mutate) -> Path:
    data = json.loads((V1 / MANIFEST_NAME).read_text())
    mutate(data)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize("mutate,fragment", [
    (lambda d: d.update(format=2), "field format: expected 1"),
    (lambda d: d.update(artifacts=[1, 2]), "field artifacts[0]: expected a JSON object, found 1"),
    (lambda d: d["artifacts"][0].update(file="../outside/decoder.onnx"), "field artifacts[0].file: expected a plain file name"),
    (lambda d: d["artifacts"][1].update(file="/etc/passwd"), "field artifacts[1].file"),
    (lambda d: d["artifacts"][0].update(file="x" * 300), "field artifacts[0].file: expected a string of at most 255"),
    (lambda d: d["artifacts"][0].pop("sha256"), "field artifacts[0].sha256 is missing"),
    (lambda d: d["artifacts"][0].update(graph="critic"), "field artifacts[0].graph: expected one of encoder, decoder"),
    (lambda d: d["artifacts"][0].update(bytes="12"), "field artifacts[0].bytes: expected an integer"),
    (lambda d: d["model"].update(image_shape=[1, 100000, 100000]), "field model.image_shape"),
    (lambda d: d["model"].update(latent_dim=True), "field model.latent_dim: expected an integer, found true"),
    (lambda d: d["artifacts"].append(dict(d["artifacts"][0])), "each file listed once"),
    (lambda d: d.pop("checkpoint"), "field checkpoint is missing"),
])
def test_malformed_manifest_names_the_field(tmp_path, mutate, fragment):
    directory = _write(tmp_path, mutate)
    with pytest.raises(VAEExportError, match="field") as info:
        Manifest.read(directory)
    assert str(tmp_path / MANIFEST_NAME) in str(info.value) and fragment in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_deeply_nested_json_is_one_error(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(VAEExportError, match="nested too deeply"):
        Manifest.read(tmp_path)


def test_missing_manifest_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no manifest"):
        Manifest.read(tmp_path)
