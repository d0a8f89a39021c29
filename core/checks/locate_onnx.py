"""Module outputs of an ONNX model, for core.checks.locate.

An in-memory copy of the model gets the chosen intermediate tensors as extra graph outputs and runs
in its own onnxruntime session (the file and the runner's session are not changed). Each node's
module comes from the exporter's metadata: the dynamo exporter writes the module stack of every node
(`pkg.torch.onnx.name_scopes`, or `namespace`). Without it (the TorchScript-based exporter), the
module is inferred from node names such as '/blocks/blocks.0/fc/Gemm'; a node added after export
(onnxruntime's int8 quantization drops the metadata of the nodes it replaces) takes the module of
a parameter it reads ('blocks.0.fc.weight_quantized' -> 'blocks.0.fc'). Either way the mapping is
marked approximate. A module's output is the output of the last node inside it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np

from core.checks.locate_capture import Capture, Event, ModuleValue, last_per_module, prefixes
from core.errors import CheckFailed
from core.runtime.base import Runner

SERIALISED_LIMIT = 1_800_000_000  # protobuf's 2 GiB ceiling, with room to spare


def capture_onnx(runner: Runner, inputs: dict[str, np.ndarray]) -> Capture:
    import onnx

    source = getattr(runner, "source", None)
    if not source or not Path(source).is_file():
        raise CheckFailed(f"The ONNX file behind {runner.name} is needed to look inside it.")
    try:
        model = onnx.load(source)
    except Exception as exc:
        raise CheckFailed(f"'{Path(source).name}' could not be read to look inside it.",
                          f"{type(exc).__name__}: {exc}") from None
    events, approximate = node_events(model.graph)
    chosen = last_per_module(events)
    if not chosen:
        raise CheckFailed(f"'{Path(source).name}' does not record which module each node belongs "
                          "to, so its divergence cannot be located.")
    names = _expose(model, list(dict.fromkeys(handle for _, _, handle in chosen)))
    session = _session(model, runner)
    feed = runner.prepare(inputs)
    try:
        results = dict(zip(names, session.run(names, feed), strict=True))
    except Exception as exc:
        raise CheckFailed(f"Running {runner.name} with its intermediate values exposed failed.",
                          f"{type(exc).__name__}: {exc}") from None
    values = []
    for module, op, name in chosen:
        array = np.asarray(results.get(name))
        if array.dtype.kind == "f":
            values.append(ModuleValue(module, op, array, array.dtype.name))
    notes = (["Some ONNX nodes carry no module metadata; their modules were inferred from node or "
              "parameter names, so the mapping is approximate."] if approximate else [])
    return Capture(values, approximate, notes)


def node_events(graph: Any) -> tuple[list[Event], bool]:
    """(module chain, op type, output name) per node that has a module, and whether any module
    came from a node name rather than the exporter's metadata."""
    events: list[Event] = []
    approximate = False
    parameters = {i.name for i in graph.initializer}
    for node in graph.node:
        if not node.output or not node.output[0]:
            continue
        chain = _chain_from_metadata({p.key: p.value for p in node.metadata_props})
        if chain is None:
            chain = _chain_from_name(node.name) or _chain_from_parameters(node, parameters)
            approximate = approximate or bool(chain)
        if chain:
            events.append((chain, node.op_type, node.output[0]))
    return events, approximate


def _chain_from_metadata(meta: dict[str, str]) -> list[str] | None:
    scopes = meta.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            names = ast.literal_eval(scopes)
        except (ValueError, SyntaxError):
            names = None
        if isinstance(names, list):
            return [str(n) for n in names[1:-1] if n]  # first: the root, last: the op itself
    namespace = meta.get("namespace")
    if namespace:
        parts = [p.split(":")[0].strip() for p in namespace.split("/")]
        return [p for p in parts[1:-1] if p]
    return None


def _chain_from_name(name: str) -> list[str]:
    """'/blocks/blocks.0/fc/Gemm' -> ['blocks', 'blocks.0', 'blocks.0.fc'] (the exporter writes
    each scope either in full or relative to its parent)."""
    if not name.startswith("/"):
        return []
    path = ""
    for part in name.strip("/").split("/")[:-1]:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return prefixes(path) if path else []


def _chain_from_parameters(node: Any, parameters: set[str]) -> list[str]:
    """The module of the first parameter-like initializer ('a.b.weight...') the node reads."""
    for name in node.input:
        if name in parameters and "." in name:
            return prefixes(name.rsplit(".", 1)[0])
    return []


def _expose(model: Any, names: list[str]) -> list[str]:
    """Make each name a graph output (typed from the model's value infos, inferred when missing)."""
    import onnx

    graph = model.graph
    known = {v.name: v for v in list(graph.value_info) + list(graph.output) + list(graph.input)}
    if any(n not in known for n in names) and model.ByteSize() < SERIALISED_LIMIT:
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            known |= {v.name: v for v in inferred.graph.value_info}
        except Exception:  # noqa: BLE001 - without inferred types, untyped names are left out
            pass
    outputs = {o.name for o in graph.output}
    usable = []
    for name in names:
        if name in outputs:
            usable.append(name)
        elif name in known and known[name].type.HasField("tensor_type"):
            elem = known[name].type.tensor_type.elem_type
            graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
            outputs.add(name)
            usable.append(name)
    return usable


def _session(model: Any, runner: Runner) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    threads = getattr(runner, "threads", None)
    if threads:
        options.intra_op_num_threads = threads
    providers = runner.session.get_providers()  # type: ignore[attr-defined]
    try:
        if model.ByteSize() < SERIALISED_LIMIT:
            return ort.InferenceSession(model.SerializeToString(), options, providers=providers)
        return _session_from_folder(model, options, providers)
    except Exception as exc:
        raise CheckFailed("onnxruntime could not load the copy of the model with its intermediate "
                          "values exposed.", f"{type(exc).__name__}: {exc}") from None


def _session_from_folder(model: Any, options: Any, providers: list[str]) -> Any:
    """A model too big for one protobuf: save it with external data in a temporary folder."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="ckpt-locate-") as folder:
        path = Path(folder) / "model.onnx"
        onnx.save_model(model, str(path), save_as_external_data=True, location="model.data")
        return ort.InferenceSession(str(path), options, providers=providers)
