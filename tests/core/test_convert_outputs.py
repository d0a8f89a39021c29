"""Where and how conversion outputs are created: missing output folders (made when asked, removed
again on failure), the usual file mode, and never onto the source itself."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

from core.convert import TARGETS, ConvertOptions, convert, convert_many
from core.errors import Cancelled, CheckpointError
from core.progress import Recorder


def dest_for(tmp_path: Path, target: str) -> Path:
    return tmp_path / ("out" if target == "safetensors-sharded" else f"out.{target}")


def no_hasher_left() -> bool:
    return not any(t.name == "source-hash" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_missing_output_folder_is_created_when_asked(files, tmp_path, target):
    folder = tmp_path / "new" / "deeper"
    result = convert(files["state_dict"], dest_for(folder, target), target, create_folders=True)
    assert all(Path(o["path"]).is_file() for o in result.outputs)
    assert Path(result.outputs[0]["path"]).is_relative_to(folder)
    with pytest.raises(CheckpointError, match="does not exist"):  # not asked: refused, as before
        convert(files["state_dict"], dest_for(tmp_path / "other", target), target)
    assert not (tmp_path / "other").exists()


def test_folders_made_for_a_failed_conversion_are_removed(files, tmp_path):
    with pytest.raises(CheckpointError, match="removed every tensor"):
        convert(files["state_dict"], tmp_path / "new" / "x.safetensors",
                options=ConvertOptions(drop=("*",)), create_folders=True)
    assert list(tmp_path.iterdir()) == []
    cancel = Recorder(cancel_after=2)
    with pytest.raises(Cancelled):
        convert(files["state_dict"], tmp_path / "a" / "b" / "out", "safetensors-sharded",
                max_shard_size=400, create_folders=True, progress=cancel)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep").mkdir()  # a folder that was there before stays
    with pytest.raises(Cancelled):
        convert(files["state_dict"], tmp_path / "keep" / "sub" / "x.safetensors",
                create_folders=True, progress=Recorder(cancel_after=2))
    assert [p.name for p in tmp_path.rglob("*")] == ["keep"]


def test_a_file_in_the_way_of_a_folder_to_create_is_a_plain_error(files, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="'.*afile' is a file, not a folder"):
        convert(files["state_dict"], tmp_path / "afile" / "sub" / "x.safetensors",
                create_folders=True)
    assert (tmp_path / "afile").read_text() == "x"


def test_batch_into_a_missing_folder_creates_it(files, tmp_path):
    out = tmp_path / "converted"
    batch = convert_many([files["state_dict"], files["dtypes"]], out)
    assert not batch.errors
    assert sorted(p.name for p in out.iterdir()) == sorted(
        Path(r.outputs[0]["path"]).name for r in batch.results)


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
@pytest.mark.parametrize("target", list(TARGETS))
def test_outputs_get_the_usual_file_mode(files, tmp_path, target):
    """0666 less the umask, like any file a user saves (not the 0600 of a private temp file)."""
    from core.files import write_text

    old = os.umask(0o027)
    try:
        result = convert(files["state_dict"], dest_for(tmp_path, target), target,
                         max_shard_size=400)
        write_text(tmp_path / "report.md", "# report\n")
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(os.stat(o["path"]).st_mode) for o in result.outputs}
    assert modes == {0o640}
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o640


@pytest.mark.parametrize(("target", "fixture"), [("safetensors", "safetensors"), ("pt", "state_dict")])
def test_converting_a_file_onto_itself_is_refused_before_anything_is_written(files, tmp_path,
                                                                             target, fixture):
    """Also with overwrite allowed, and when the default output name is the source's own."""
    from core.convert import default_destination

    src = tmp_path / f"model.{target}"
    shutil.copy(files[fixture], src)
    assert default_destination(src, target) == src
    data = src.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(CheckpointError, match="is the file being converted"):
            convert(src, src, target, overwrite=overwrite)
        assert list(tmp_path.iterdir()) == [src] and src.read_bytes() == data
        assert no_hasher_left()
