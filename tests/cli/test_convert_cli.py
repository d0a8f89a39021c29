"""`ckpt-studio convert` as a user runs it (through core.cli.convert's parser + core.cli's guard)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.cli.convert import add_parser
from core.cli.main import EXIT_ERROR, EXIT_OK, _guarded, build_parser
from core.convert.safetensors_sharded import INDEX_NAME

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="ckpt-studio")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = _guarded(args.run, args)
    out, err = capsys.readouterr()
    return code, out, err


def test_convert_one_file(files, tmp_path, capsys):
    dest = tmp_path / "model.safetensors"
    code, out, err = run(["convert", str(files["state_dict"]), "-o", str(dest)], capsys)
    assert code == EXIT_OK, err
    assert "10 tensors written, verified (xxh3-64)" in out
    assert "head.weight = embed.weight" in out
    sd = torch.load(files["state_dict"], weights_only=True)
    assert torch.equal(load_file(dest)["conv.weight"], sd["conv.weight"])


def test_convert_json_with_transforms(files, tmp_path, capsys):
    dest = tmp_path / "plain.pt"
    code, out, _ = run(["convert", str(files["lightning"]), "--to", "pt", "-o", str(dest),
                        "--strip-prefix", "model.", "--dtype", "bf16", "--json"], capsys)
    assert code == EXIT_OK
    data = json.loads(out)
    assert data["target"] == "pt" and data["verification"]["passed"] is True
    assert data["dtype_changes"]["conv.weight"] == ["float32", "bfloat16"]
    assert "bn.num_batches_tracked" not in data["dtype_changes"]
    assert data["dropped_sections"] == {"optimizer": 21}
    loaded = torch.load(dest, weights_only=True)
    assert loaded["bn.num_batches_tracked"].dtype == torch.int64


def test_existing_output_is_refused_without_overwrite(files, tmp_path, capsys):
    dest = tmp_path / "x.safetensors"
    assert run(["convert", str(files["state_dict"]), "-o", str(dest)], capsys)[0] == EXIT_OK
    code, out, err = run(["convert", str(files["dtypes"]), "-o", str(dest)], capsys)
    assert code == EXIT_ERROR
    assert "already exists" in err and "Traceback" not in err
    code, _, _ = run(["convert", str(files["dtypes"]), "-o", str(dest), "--overwrite"], capsys)
    assert code == EXIT_OK and "f16" in load_file(dest)


def test_batch_into_a_folder_reports_each_file(files, tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00" * 64)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run(["convert", str(files["state_dict"]), str(bad), str(files["ema"]),
                          "--out-dir", str(out_dir)], capsys)
    assert code == EXIT_ERROR
    assert sorted(p.name for p in out_dir.iterdir()) == ["ema.safetensors", "state_dict.safetensors"]
    assert out.count("tensors written") == 2
    assert "bad.ckpt" in err


def test_sharded_with_max_shard_size(files, tmp_path, capsys):
    dest = tmp_path / "shards"
    code, out, err = run(["convert", str(files["state_dict"]), "--to", "safetensors-sharded",
                          "--max-shard-size", "0.5KB", "-o", str(dest)], capsys)
    assert code == EXIT_OK, err
    index = json.loads((dest / INDEX_NAME).read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert "shards + index" in out


@pytest.mark.parametrize("argv, message", [
    (["--max-shard-size", "lots"], "is not a size"),
    (["--rename", "(=>x"], "not a valid regular expression"),
    (["--section", "ema"], "no section named 'ema'"),
])
def test_bad_options_are_plain_errors(files, tmp_path, capsys, argv, message):
    code, _, err = run(["convert", str(files["state_dict"]), "-o", str(tmp_path / "x.safetensors"),
                        *argv], capsys)
    assert code == EXIT_ERROR and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_output_names_one_file_only(files, tmp_path, capsys):
    code, _, err = run(["convert", str(files["state_dict"]), str(files["ema"]), "-o",
                        str(tmp_path / "x.safetensors")], capsys)
    assert code == EXIT_ERROR and "--out-dir" in err


def test_full_command_line(files, tmp_path):
    if "convert" not in build_parser()._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
        pytest.skip("core.cli does not wire the convert subcommand yet")
    dest = tmp_path / "x.safetensors"
    out = subprocess.run([sys.executable, "-m", "core.cli", "convert", str(files["safetensors"]),
                          "-o", str(dest)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert dest.exists()


def test_target_names_match_the_registry():
    from core.cli.convert import TARGET_NAMES
    from core.convert import TARGETS

    assert list(TARGET_NAMES) == list(TARGETS)


@pytest.mark.parametrize("argv, message", [
    (["--to", "safetensors", "--max-shard-size", "1KB", "-o", "x.safetensors"],
     "--max-shard-size only applies to sharded output, and --to safetensors writes one file"),
    (["--to", "pt", "--max-shard-size", "1KB", "-o", "x.pt"], "--max-shard-size only applies"),
    (["--to", "safetensors-sharded", "-o", "x.safetensors"],
     "writes a folder of shards, but 'x.safetensors' is a file name; name a folder, e.g. -o "),
    (["--max-shard-size", "1KB", "-o", "x.safetensors"],
     "--max-shard-size (sharded output) writes a folder of shards"),
    (["--to", "safetensors", "-o", "out.pt"],
     "'out.pt' is a pt file name, but --to safetensors was asked; name it 'out.safetensors'"),
    (["--to", "pt", "-o", "out.safetensors"], "is a safetensors file name, but --to pt"),
    (["--max-shard-size", "2", "-o", "shards"], "'2' has no unit"),
])
def test_options_that_disagree_are_refused_before_anything_is_written(files, tmp_path, capsys,
                                                                      argv, message):
    argv = [a if a not in ("x.safetensors", "x.pt", "out.pt", "out.safetensors", "shards")
            else str(tmp_path / a) for a in argv]
    code, out, err = run(["convert", str(files["state_dict"]), *argv], capsys)
    assert code == EXIT_ERROR
    assert message in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, target", [("m.pt", "pt"), ("m.pth", "pt"), ("m.bin", "pt"),
                                          ("m.safetensors", "safetensors")])
def test_the_output_extension_chooses_the_format(files, tmp_path, capsys, name, target):
    code, out, err = run(["convert", str(files["state_dict"]), "-o", str(tmp_path / name),
                          "--json"], capsys)
    assert code == EXIT_OK, err
    assert json.loads(out)["target"] == target
    head = (tmp_path / name).read_bytes()[:2]
    assert (head == b"PK") == (target == "pt")  # a torch zip, or a safetensors header


def test_max_shard_size_alone_means_sharded_output(files, tmp_path, capsys):
    code, out, err = run(["convert", str(files["state_dict"]), "--max-shard-size", "500B", "-o",
                          str(tmp_path / "shards")], capsys)
    assert code == EXIT_OK, err
    assert (tmp_path / "shards" / INDEX_NAME).is_file()
    assert len(list((tmp_path / "shards").glob("model-*.safetensors"))) > 1


@pytest.mark.parametrize("to", ["safetensors", "safetensors-sharded", "pt"])
def test_a_missing_out_dir_is_created(files, tmp_path, capsys, to):
    out_dir = tmp_path / "new" / "folder"
    code, out, err = run(["convert", str(files["state_dict"]), "--to", to, "--out-dir",
                          str(out_dir)], capsys)
    assert code == EXIT_OK, err
    assert [p.name for p in out_dir.iterdir()] == [
        {"safetensors": "state_dict.safetensors", "pt": "state_dict.pt"}.get(to, "state_dict")]
    code, out, err = run(["convert", str(files["state_dict"]), str(files["ema"]), "--out-dir",
                          str(tmp_path / "batch")], capsys)
    assert code == EXIT_OK, err
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == [
        "ema.safetensors", "state_dict.safetensors"]


def test_a_failed_conversion_leaves_no_out_dir_behind(files, tmp_path, capsys):
    code, _, err = run(["convert", str(files["state_dict"]), "--drop", "*", "--out-dir",
                        str(tmp_path / "new")], capsys)
    assert code == EXIT_ERROR and "removed every tensor" in err
    assert list(tmp_path.iterdir()) == []


def test_a_strip_prefix_that_matches_nothing_is_said(files, tmp_path, capsys):
    code, out, err = run(["convert", str(files["state_dict"]), "--strip-prefix", "module.", "-o",
                          str(tmp_path / "x.safetensors")], capsys)
    assert code == EXIT_OK, err
    assert "note: The prefix 'module.' to strip starts no tensor name" in out


@pytest.mark.skipif(sys.platform == "win32", reason="file modes and umask are POSIX")
def test_outputs_are_readable_like_any_saved_file(files, tmp_path, capsys):
    import os
    import stat

    old = os.umask(0o022)
    try:
        code, _, err = run(["convert", str(files["state_dict"]), "-o", str(tmp_path / "x.pt")],
                           capsys)
    finally:
        os.umask(old)
    assert code == EXIT_OK, err
    assert stat.S_IMODE((tmp_path / "x.pt").stat().st_mode) == 0o644


def test_converting_a_file_onto_itself_is_refused(files, tmp_path, capsys):
    import shutil

    src = tmp_path / "model.safetensors"
    shutil.copy(files["safetensors"], src)
    data = src.read_bytes()
    for extra in ([], ["--overwrite"], ["-o", str(src)]):
        code, _, err = run(["convert", str(src), *extra], capsys)
        assert code == EXIT_ERROR and "is the file being converted" in err
    assert list(tmp_path.iterdir()) == [src] and src.read_bytes() == data
