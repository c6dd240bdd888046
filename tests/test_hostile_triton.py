"""Hostile options of `vae-export triton` (issue 28): numbers Triton's ModelConfig schema cannot
hold are refused at parse time (exit 2) and an unwritable --out is one `Error:` line; nothing is
written either way. The configs at the bounds parse with Triton's own protobuf schema."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from vae_export.cli import main

from conftest import one_line_error, snapshot

INT32_MAX = 2**31 - 1


@pytest.mark.parametrize("option, value", [
    ("--max-batch-size", str(10**30)),
    ("--max-batch-size", str(INT32_MAX + 1)),  # Triton's max_batch_size is an int32
    ("--instances", str(10**30)),  # instance_group count: int32
    ("--queue-delay-us", str(2**64)),  # max_queue_delay_microseconds: uint64
])
def test_numbers_the_schema_cannot_hold_are_refused_at_parse_time(tmp_path, runner, exported_dir, option, value):
    out = tmp_path / "repo"
    result = runner.invoke(main, ["triton", "--artifacts", str(exported_dir), "--out", str(out), option, value])
    assert result.exit_code == 2, result.output
    assert f"Error: Invalid value for '{option}'" in result.stderr
    assert not out.exists()


def test_the_largest_accepted_values_make_configs_triton_parses(tmp_path, runner, exported_dir):
    from vae_export.limits import MAX_INSTANCES, MAX_QUEUE_DELAY_US, MAX_TRITON_BATCH

    assert MAX_TRITON_BATCH <= INT32_MAX and MAX_INSTANCES <= INT32_MAX and MAX_QUEUE_DELAY_US < 2**64
    out = tmp_path / "repo"
    result = runner.invoke(main, ["triton", "--artifacts", str(exported_dir), "--out", str(out),
                                  "--max-batch-size", str(MAX_TRITON_BATCH), "--instances", str(MAX_INSTANCES),
                                  "--queue-delay-us", str(MAX_QUEUE_DELAY_US)])
    assert result.exit_code == 0, result.output
    config = text_format.Parse((out / "vae_decoder" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.max_batch_size == MAX_TRITON_BATCH
    assert config.instance_group[0].count == MAX_INSTANCES
    assert config.dynamic_batching.max_queue_delay_microseconds == MAX_QUEUE_DELAY_US


@pytest.mark.parametrize("out", ["/proc", "/proc/self"])
def test_an_unwritable_out_is_one_error_line(runner, exported_dir, out):
    result = runner.invoke(main, ["triton", "--artifacts", str(exported_dir), "--out", out])
    assert result.exit_code in (1, 2), result.output
    one_line_error(result, f"--out {out}", "cannot write")


def test_out_under_a_regular_file_and_a_failed_copy_leave_the_repository_as_it_was(tmp_path, runner, exported_dir):
    out = tmp_path / "repo"
    assert runner.invoke(main, ["triton", "--artifacts", str(exported_dir), "--out", str(out)]).exit_code == 0
    before = snapshot(out)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "encoder.onnx").write_bytes(b"not a graph")
    (broken / "decoder.onnx").write_bytes(b"not a graph")
    result = runner.invoke(main, ["triton", "--artifacts", str(broken), "--out", str(out)])
    assert result.exit_code in (1, 2)
    one_line_error(result, "encoder.onnx")
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["vae_decoder", "vae_encoder"]
