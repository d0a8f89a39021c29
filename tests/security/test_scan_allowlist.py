"""`scan` never hands out a key to code execution.

It offers an `add_safe_globals` line only for classes on the allowlist of inert types; every other
global (a code-execution gadget, a function, a class of unknown code) is rated dangerous and gets no
line. Each gadget below is one that a denylist scanner rated harmless while following its advice
made `torch.load(weights_only=True)` run the payload (`test_gadgets_really_run_when_allowed`).
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import importlib
import json
import pathlib
import subprocess
import sys
import types
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from core.cli import main as cli_main
from core.formats import open_checkpoint
from core.scan import INERT_TYPES, allowed_by_weights_only, is_inert_type, scan_checkpoint
from tests.fixtures.models import FixtureFiles
from tests.security.payloads import state_dict_pickle, text, torch_zip_with, touch

GADGETS = [
    # named in the hostile corpus
    "pkgutil.resolve_name", "pydoc.pipepager", "pip.main", "cProfile.runctx", "torch.load",
    "torch.serialization.load", "logging.config.dictConfig", "uuid._get_command_stdout",
    "_operator.attrgetter", "_functools.partial", "torch.fx.graph_module._forward_from_src",
    "numpy.f2py.crackfortran.myeval", "numpy.f2py.f2py2e.run_main", "numpy.f2py.diagnose.run",
    "imp.load_source",
    # more of the same kind
    "timeit.timeit", "profile.runctx", "trace.Trace.runctx", "code.InteractiveInterpreter",
    "doctest.debug_script", "ensurepip._run_pip", "venv.create", "zipimport.zipimporter",
    "importlib.machinery.SourceFileLoader", "_posixsubprocess.fork_exec", "builtins.type",
    "builtins.breakpoint", "copyreg._reconstructor", "numpy.load", "numpy.lib.npyio.load",
    "torch.hub.load", "torch._inductor.codecache.PyCodeCache.load", "asyncio.create_subprocess_shell",
    "idlelib.pyshell.ModifiedInterpreter.runcode", "test.support.script_helper.assert_python_ok",
    "collections.defaultdict", "numpy._core.multiarray.scalar", "numpy.core.multiarray._reconstruct",
    "fractions.Fraction",
    # reported scanner bypasses of the same kind (calls that reach a shell, a file or code)
    "asyncio.unix_events._UnixSubprocessTransport._start", "distutils.file_util.write_file",
    "numpy.testing._private.utils.runstring", "operator.methodcaller", "functools.reduce",
    "pty.spawn", "bdb.Bdb.run", "ctypes.CDLL", "shutil.copyfile", "_io.FileIO",
    "lib2to3.pgen2.grammar.Grammar.load", "torch.utils.collect_env.run", "_pickle.loads",
    "marshal.loads", "types.FunctionType", "types.CodeType", "site.main",
    # names next to inert ones, and classes of code nobody here knows
    "argparse.Namespace.__init__", "pathlib.PosixPath.write_text", "uuid.UUID.__init__",
    "collections.OrderedDict.fromkeys", "numpy.dtype.__new__", "argparse.ArgumentParser",
    "tests.fixtures.models.TinyNet", "my_training_lib.config.TrainConfig",
    "torch.nn.modules.linear.Linear", "torch._utils._rebuild_tensor_v2_x",
]


def _global(qualname: str) -> bytes:
    module, _, name = qualname.rpartition(".")  # the reader names "module.name" either way
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def with_value(value_opcodes: bytes) -> bytes:
    """torch.save's data.pkl of a small state dict, plus entry "payload" built by the opcodes."""
    body = state_dict_pickle(2)
    assert body.endswith(b".")
    return body[:-1] + text("payload") + value_opcodes + b"s."


def gadget_call(qualname: str, marker: Path) -> bytes:
    """gadget("touch marker"), next to an argparse.Namespace (an inert type scan may allow)."""
    namespace = _global("argparse.Namespace") + b")R"
    return b"(" + namespace + _global(qualname) + text(touch(marker)) + b"\x85Rt"


@pytest.mark.parametrize("qualname", GADGETS)
def test_gadget_is_dangerous_and_never_allowed(tmp_path: Path, marker: Path, qualname: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = torch_zip_with(tmp_path, "gadget", with_value(gadget_call(qualname, marker)))
    ckpt = open_checkpoint(path)
    found = [f for f in ckpt.findings if f.name == qualname]
    assert found and all(f.severity == "dangerous" and f.blocks_weights_only for f in found)
    assert "could do anything" in found[0].message or "run commands" in found[0].message
    scan = scan_checkpoint(ckpt)
    assert scan.refused_by_weights_only and scan.allow_line() is None
    assert cli_main(["scan", "--json", str(path)]) == 1
    assert json.loads(capsys.readouterr().out)["allow_line"] is None
    assert cli_main(["scan", str(path)]) == 1
    out = capsys.readouterr().out
    assert qualname in out and "add_safe_globals" not in out
    assert not marker.exists()


def test_gadget_alone_in_a_plain_pickle_is_refused_naming_it(tmp_path: Path, marker: Path) -> None:
    from core.errors import UnsafeContent

    for qualname in ("cProfile.runctx", "pydoc.pipepager", "tests.fixtures.models.TinyNet"):
        path = tmp_path / "plain.pkl"
        path.write_bytes(b"\x80\x02" + _global(qualname) + text(touch(marker)) + b"\x85R.")
        with pytest.raises(UnsafeContent) as caught:
            open_checkpoint(path)
        assert qualname in caught.value.message
    assert not marker.exists()


def test_gadgets_really_run_when_allowed(tmp_path: Path) -> None:
    """Control: the line an older scan printed for these makes torch.load(weights_only=True) run
    the payload, so the test above guards against a real attack (run in a child process)."""
    calls = {  # gadget -> its arguments, as a Python expression
        "cProfile.runctx": "(f'open({str(m)!r}, \"w\")', {}, {})",
        "timeit.timeit": "('pass', f'open({str(m)!r}, \"w\")', None, 1)",  # setup runs first
        "pydoc.pipepager": "('', f'touch {m}')",
        "uuid._get_command_stdout": "('touch', str(m))",
    }
    script = ("import importlib, pickle, sys, torch\nfrom pathlib import Path\n"
              "class Call:\n    def __init__(self, f, a): self.f, self.a = f, a\n"
              "    def __reduce__(self): return self.f, self.a\n"
              "for name, args in json_calls.items():\n"
              "    module, _, attr = name.rpartition('.')\n"
              "    func = getattr(importlib.import_module(module), attr)\n"
              "    m = Path(name + '.RAN')\n"
              "    torch.save({'payload': Call(func, eval(args))}, name + '.pt')\n"
              "    torch.serialization.add_safe_globals([func])\n"
              "    try:\n        torch.load(name + '.pt', weights_only=True)\n"
              "    except Exception as exc:\n        print(name, exc)\n")
    subprocess.run([sys.executable, "-c", f"json_calls = {calls!r}\n" + script], check=True,
                   timeout=100, cwd=tmp_path)
    assert [n for n in calls if not (tmp_path / f"{n}.RAN").exists()] == []


INERT_VALUES = {
    "namespace": argparse.Namespace(lr=0.1, layers=[1, 2], name="run1"),
    "simple_namespace": types.SimpleNamespace(epochs=3),
    "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    "date_time_delta": [datetime.date(2024, 1, 2), datetime.time(1, 2), datetime.timedelta(3)],
    "decimal_uuid": [decimal.Decimal("1.25"), uuid.UUID(int=5)],
    "paths": [pathlib.PosixPath("/data/run1"), pathlib.PurePosixPath("a/b"),
              pathlib.PureWindowsPath("C:/runs")],
    "containers": [frozenset({1, 2}), b"", slice(1, 5, 2), range(3)],
    "torch_version": torch.__version__,
    "numpy_dtypes": [np.dtype("float32"), np.dtype(">i8"), np.dtype("?"), np.dtype("U3"),
                     np.dtype("M8[s]"), np.dtype("c16"), np.dtypes.Float32DType],
}


def test_every_offered_line_lets_torch_load_the_file_and_runs_nothing(
        files: FixtureFiles, tmp_path: Path, marker: Path) -> None:
    """Each line scan offers (fixtures + one file per inert value + one with all of them) is
    followed in a child process, alone (torch's allowlist cleared before each): torch.load(
    weights_only=True) then loads the file, equal to what was saved, and nothing runs."""
    paths = dict(files.paths)
    for name, value in [*INERT_VALUES.items(), ("all", INERT_VALUES)]:
        paths[name] = tmp_path / f"{name}.pt"
        torch.save({"weight": torch.arange(4.0), "value": value}, paths[name])
    offered = {}
    for name, path in paths.items():
        try:
            line = scan_checkpoint(open_checkpoint(path)).allow_line()
        except Exception:  # noqa: BLE001 - files scan cannot open offer nothing to follow
            continue
        if line is not None:
            offered[name] = (str(path), line)
    assert set(INERT_VALUES) | {"all"} <= set(offered)
    script = ("import json, sys, torch\nfor name, (path, line) in json.loads(sys.argv[1]).items():\n"
              "    torch.serialization.clear_safe_globals()\n    try:\n        exec(line, {})\n"
              "        x = torch.load(path, weights_only=True)\n"
              "        shown = repr(x.get('value') if isinstance(x, dict) else type(x))\n"
              "        print(json.dumps([name, 0, shown, '']))\n"
              "    except Exception as exc:\n        print(json.dumps([name, 1, '', str(exc)[-300:]]))\n")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(offered)], check=True,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    results = {r[0]: r[1:] for r in map(json.loads, done.stdout.splitlines())}
    assert set(results) == set(offered)
    for name, (code, shown, err) in results.items():
        assert code == 0, (name, offered[name][1], err)
        if name in INERT_VALUES:
            assert shown == repr(INERT_VALUES[name]), name
    assert not marker.exists()


def test_offered_lines_name_only_inert_types() -> None:
    """Every allowlisted name that exists here is a class (never a function), and the ones that
    describe a value torch refuses by default are what the line lists."""
    for name in sorted(INERT_TYPES):
        module, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            assert name.startswith("pathlib._local."), name  # only Python >= 3.13 has it
            continue
        assert isinstance(obj, type), name
    assert not any(is_inert_type(n) for n in GADGETS)


def test_weights_only_names_are_exactly_torchs() -> None:
    """What scan says torch accepts is torch's own allowlist, name for name (no prefixes: a name
    like torch._utils._rebuild_tensor_v2_x is refused by torch and rated as code here)."""
    from torch._weights_only_unpickler import _get_allowed_globals

    torch_names = set(_get_allowed_globals())
    assert all(allowed_by_weights_only(n) for n in torch_names)
    for name in torch_names:
        for near in (name + "_x", name + ".__call__", name.upper(), "x" + name):
            assert not allowed_by_weights_only(near), near


def test_cli_offers_the_line_for_inert_types_only(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "args.pt"
    torch.save({"weight": torch.zeros(2), "args": argparse.Namespace(lr=0.1)}, path)
    assert cli_main(["scan", str(path)]) == 1  # torch.load(weights_only=True) refuses it as is
    out = capsys.readouterr().out
    assert "holds Python objects besides tensors" in out and "code references" not in out
    assert "import argparse" in out and "add_safe_globals([argparse.Namespace])" in out
