"""The Triton model repository, its configs parsed with Triton's own ModelConfig protobuf
schema (tritonclient ships model_config_pb2). Triton itself cannot run here."""

from __future__ import annotations

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from vae_export.cli import main
from vae_export.onnxinfo import load_onnx, signature

from conftest import snapshot


def _config(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())  # raises on any unknown field


def test_repository_layout_and_configs(tmp_path, runner, exported_dir):
    out = tmp_path / "model_repository"
    result = runner.invoke(main, ["triton", "--artifacts", str(exported_dir), "--out", str(out),
                                  "--max-batch-size", "128", "--instances", "2", "--queue-delay-us", "500"])
    assert result.exit_code == 0, result.output
    assert sorted(snapshot(out)) == ["vae_decoder/1/model.onnx", "vae_decoder/config.pbtxt",
                                     "vae_encoder/1/model.onnx", "vae_encoder/config.pbtxt"]
    for role, name in (("encoder", "vae_encoder"), ("decoder", "vae_decoder")):
        source = exported_dir / f"{role}.onnx"
        assert (out / name / "1" / "model.onnx").read_bytes() == source.read_bytes()
        config = _config(out / name / "config.pbtxt")
        assert (config.name, config.platform, config.max_batch_size) == (name, "onnxruntime_onnx", 128)
        graph = signature(load_onnx(source))
        for declared, actual in ((config.input, graph["inputs"]), (config.output, graph["outputs"])):
            assert [t.name for t in declared] == [v["name"] for v in actual]
            assert [list(t.dims) for t in declared] == [v["shape"][1:] for v in actual]  # no batch axis
            assert all(t.data_type == model_config_pb2.TYPE_FP32 for t in declared)
        assert config.dynamic_batching.max_queue_delay_microseconds == 500
        assert [(g.count, g.kind) for g in config.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
    assert [list(t.dims) for t in _config(out / "vae_decoder" / "config.pbtxt").output] == [[1, 28, 28]]
    assert [list(t.dims) for t in _config(out / "vae_encoder" / "config.pbtxt").output] == [[32], [32]]


def test_rewrite_replaces_whole_models_and_bad_options_write_nothing(tmp_path, runner, exported_dir):
    out = tmp_path / "repo"
    assert runner.invoke(main, ["triton", "--artifacts", str(exported_dir), "--out", str(out)]).exit_code == 0
    (out / "vae_decoder" / "1" / "stale.onnx").write_bytes(b"old")
    result = runner.invoke(main, ["triton", "--artifacts", str(exported_dir), "--out", str(out), "--kind", "gpu"])
    assert result.exit_code == 0, result.output
    assert sorted(snapshot(out)) == ["vae_decoder/1/model.onnx", "vae_decoder/config.pbtxt",
                                     "vae_encoder/1/model.onnx", "vae_encoder/config.pbtxt"]  # no stale file, no temp dirs
    assert _config(out / "vae_decoder" / "config.pbtxt").instance_group[0].kind == \
        model_config_pb2.ModelInstanceGroup.KIND_GPU
    before = snapshot(out)
    for args, message in ((["--variant", "ort"], "Error: --variant ort: Triton's ONNX Runtime backend loads .onnx"),
                          (["--variant", "executorch"], "Error: --variant executorch: Triton's ONNX Runtime backend"),
                          (["--variant", "int8"], "no encoder.int8.onnx")):
        result = runner.invoke(main, ["triton", "--artifacts", str(exported_dir), "--out", str(out), *args])
        assert result.exit_code == 2 and message in result.output, result.output
    assert snapshot(out) == before
