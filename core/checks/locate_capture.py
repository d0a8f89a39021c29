"""Capturing every module's output of one run, for core.checks.locate.

Each backend is looked inside its own way, and each gives module outputs in execution order:

- eager (nn.Module, a Hugging Face folder, torch.compile's original module): a forward hook on every
  submodule records its first output (the first tensor of a tuple/dict output) at its first call;
- TorchScript: the inlined graph of `forward` names each node's module (`getModuleHierarchy`); the
  last node inside a module is its output, and those values become extra outputs of a copy of the
  graph, run as a function on the loaded module;
- .pt2: the ExportedProgram's graph nodes carry `nn_module_stack`; an FX interpreter runs the graph
  and keeps the last node of each module;
- ONNX: see core.checks.locate_onnx.

"The last node inside a module" is that module's output for the usual modules (a module whose last
operation is not what it returns would be compared at that operation instead).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import CheckFailed
from core.runtime.base import Runner


@dataclass
class ModuleValue:
    """One module's output: its dotted name, what produced it (class name or op), the array."""

    module: str
    op: str
    value: np.ndarray
    dtype: str


@dataclass
class Capture:
    """Module outputs of one run in execution order (a module completes after its children)."""

    values: list[ModuleValue]
    approximate: bool = False  # module names were inferred (from node names), not recorded
    notes: list[str] = field(default_factory=list)


Event = tuple[list[str], str, Any]  # (module chain from the outermost, op, a handle on the value)


def capture(runner: Runner, inputs: dict[str, np.ndarray]) -> Capture:
    """Run `runner` once on `inputs` and record every module's output it can see."""
    backend = getattr(runner, "backend", "")
    if backend == "onnxruntime":
        from core.checks.locate_onnx import capture_onnx

        return capture_onnx(runner, inputs)
    if backend not in ("eager", "compiled", "torchscript", "pt2"):
        raise CheckFailed(f"Locating a divergence cannot look inside {runner.name}; compare an "
                          "eager model, TorchScript, .pt2 or ONNX file instead.")
    feed = runner.prepare(inputs)
    module = getattr(runner.module, "_orig_mod", runner.module)  # torch.compile wraps the module
    try:
        if backend == "torchscript":
            return _capture_torchscript(module, list(feed.values()))
        if backend == "pt2":
            return _capture_fx(module, list(feed.values()))
        return _capture_eager(module, list(feed.values()))
    except CheckFailed:
        raise
    except Exception as exc:
        raise CheckFailed(f"Running {runner.name} to record its modules' outputs failed.",
                          f"{type(exc).__name__}: {exc}") from None


def last_per_module(events: Iterable[Event]) -> list[tuple[str, str, Any]]:
    """(module, op, handle) of the last event inside each module, in completion order; a child
    completes before its parent when both end on the same node."""
    last: dict[str, tuple[int, int, str, Any]] = {}
    for index, (chain, op, handle) in enumerate(events):
        for module in chain:
            last[module] = (index, -module.count("."), op, handle)
    ordered = sorted(last.items(), key=lambda item: item[1][:2])
    return [(module, op, handle) for module, (_, _, op, handle) in ordered]


def prefixes(dotted: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b', 'a.b.c']."""
    parts = dotted.split(".")
    return [".".join(parts[:i + 1]) for i in range(len(parts))]


def tensor_to_numpy(tensor: Any) -> tuple[np.ndarray, str]:
    """A copy as a numpy array (bfloat16 as float32), and the tensor's own dtype name."""
    import torch

    dtype = str(tensor.dtype).removeprefix("torch.")
    tensor = tensor.detach().to("cpu")
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.numpy().copy(), dtype


def _first_tensor(value: Any) -> Any:
    import torch

    from core.runtime.torch_common import flatten

    for item in flatten(value.to_tuple() if hasattr(value, "to_tuple") else value):
        if isinstance(item, torch.Tensor) and item.is_floating_point():
            return item
    return None


def _capture_eager(module: Any, args: list[Any]) -> Capture:
    """A module called more than once keeps its last call, as the graph captures do."""
    import torch

    seen: dict[str, ModuleValue] = {}  # in order of (last) completion

    def hook_for(name: str, kind: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is not None:
                seen.pop(name, None)
                seen[name] = ModuleValue(name, kind, *tensor_to_numpy(tensor))
        return hook

    handles = [sub.register_forward_hook(hook_for(name, type(sub).__name__))
               for name, sub in module.named_modules() if name]
    try:
        with torch.inference_mode():
            module(*args)
    finally:
        for handle in handles:
            handle.remove()
    return Capture(list(seen.values()))


def _ts_chain(hierarchy: str) -> list[str]:
    """'blocks(Sequential).0(B).act(ReLU).UNKNOWN_INSTANCE(UNKNOWN_TYPE)' -> blocks, blocks.0, ..."""
    path = re.sub(r"\([^()]*\)", "", hierarchy).split(".UNKNOWN_INSTANCE")[0]
    path = path.removeprefix("UNKNOWN_INSTANCE")
    return prefixes(path) if path else []


def _capture_torchscript(module: Any, args: list[Any]) -> Capture:
    import torch

    graph = module.inlined_graph  # a fresh inlined copy; the module itself is not changed
    torch._C._jit_pass_remove_mutation(graph)  # relu_ would overwrite the value recorded before it
    events: list[Event] = []
    for node in graph.nodes():
        if node.kind().startswith("prim::") or node.outputsSize() != 1:
            continue
        if not isinstance(node.output().type(), torch._C.TensorType):
            continue
        chain = _ts_chain(node.getModuleHierarchy())
        if chain:
            events.append((chain, node.kind(), node.output()))
    chosen = last_per_module(events)
    if not chosen:
        raise CheckFailed("This TorchScript program does not record which module each operation "
                          "belongs to, so its divergence cannot be located.")
    originals = list(graph.outputs())
    extra = [handle for _, _, handle in chosen]
    pack = graph.create("prim::TupleConstruct", originals + extra, 1)
    graph.appendNode(pack)
    pack.output().setType(torch._C.TupleType([v.type() for v in originals + extra]))
    for _ in originals:
        graph.eraseOutput(0)
    graph.registerOutput(pack.output())
    function = torch._C._create_function_from_graph("locate_forward", graph)
    with torch.inference_mode():
        results = function(module._c, *args)[len(originals):]
    values = []
    for (name, op, _), tensor in zip(chosen, results, strict=True):
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            values.append(ModuleValue(name, op, *tensor_to_numpy(tensor)))
    return Capture(values)


def _capture_fx(module: Any, args: list[Any]) -> Capture:
    import torch
    import torch.fx

    events: list[Event] = []
    for node in module.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        if node.op == "call_function" and stack:
            path = list(stack.values())[-1][0]
            if path:
                events.append((prefixes(path), str(node.target).removesuffix(".default"), node))
    chosen = last_per_module(events)
    if not chosen:
        raise CheckFailed("This .pt2 program does not record which module each operation belongs "
                          "to, so its divergence cannot be located.")
    wanted: dict[Any, list[str]] = {}
    for name, _, handle in chosen:
        wanted.setdefault(handle, []).append(name)
    recorded: dict[str, ModuleValue] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node: Any) -> Any:
            result = super().run_node(node)
            if node in wanted and isinstance(result, torch.Tensor) and result.is_floating_point():
                array, dtype = tensor_to_numpy(result)
                for name in wanted[node]:
                    recorded[name] = ModuleValue(name, "", array, dtype)
            return result

    with torch.inference_mode():
        Recorder(module).run(*args)
    values = []
    for name, op, _ in chosen:
        if name in recorded:
            recorded[name].op = op
            values.append(recorded[name])
    return Capture(values)
