"""A Hugging Face model folder's config: where it is, whether transformers can build it without
running the folder's own code, which task it was made for, and the model class for a task.

config.json is read as data (core.formats.folder.read_config). transformers is imported only to
build a model, always with `trust_remote_code=False` and `local_files_only=True`: nothing is
downloaded and no code from the folder runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ExportError
from core.formats.folder import CONFIG_FILE, WEIGHT_FILES, read_config

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

# task -> the transformers Auto class that builds a model for it
TASKS: dict[str, str] = {
    "feature-extraction": "AutoModel",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "causal-lm": "AutoModelForCausalLM",
    "image-classification": "AutoModelForImageClassification",
}
# class-name endings -> task (the class a config's `architectures` names)
_TASK_OF_SUFFIX = (("ForSequenceClassification", "text-classification"),
                   ("ForTokenClassification", "token-classification"),
                   ("ForCausalLM", "causal-lm"), ("LMHeadModel", "causal-lm"),
                   ("ForImageClassification", "image-classification"))


def model_folder(path: str | Path) -> Path | None:
    """The folder whose config.json describes `path` (a folder, or a weights file inside one)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return folder if (folder / CONFIG_FILE).is_file() else None


def folder_config(folder: Path) -> dict[str, Any]:
    """config.json of a model folder, as data; one sentence when it is missing or damaged."""
    if not (folder / CONFIG_FILE).is_file():
        raise ExportError(f"The folder '{folder.name}' has no {CONFIG_FILE}, so the model's "
                          "architecture is unknown; give it with --arch.")
    return read_config(folder / CONFIG_FILE)


def infer_task(config: dict[str, Any]) -> str:
    """The task the config's first architecture was made for; feature-extraction otherwise."""
    names = config.get("architectures") or []
    first = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else ""
    for suffix, task in _TASK_OF_SUFFIX:
        if first.endswith(suffix):
            return task
    return "feature-extraction"


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ExportError(f"'{task}' is not a task; choose one of {', '.join(TASKS)}.")
    return task


def build_for_task(folder: Path, config: dict[str, Any], task: str) -> nn.Module:
    """A freshly initialised transformers model for `task` from the folder's config (no weights)."""
    transformers = _transformers()
    _refuse_remote_code(folder, config, transformers)
    try:
        hf_config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True,
                                                            trust_remote_code=False)
    except Exception as exc:
        raise ExportError(f"transformers could not read the config of '{folder.name}'.",
                          f"{type(exc).__name__}: {exc}") from None
    cls = _class_for(config, task, transformers)
    try:
        model = cls(hf_config) if cls is not None else \
            getattr(transformers, TASKS[task]).from_config(hf_config, trust_remote_code=False)
    except ValueError as exc:
        raise ExportError(f"transformers has no {task} model for the model type "
                          f"'{config.get('model_type')}'; choose another --task.",
                          str(exc)) from None
    except Exception as exc:
        raise ExportError(f"transformers could not build the model in '{folder.name}'.",
                          f"{type(exc).__name__}: {exc}") from None
    return model.eval()


def _class_for(config: dict[str, Any], task: str, transformers: Any) -> Any:
    """The class `architectures` names, when it is transformers' own and made for `task`."""
    names = config.get("architectures") or []
    first = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None
    if first is None or infer_task(config) != task or first.startswith("_"):
        return None
    if task == "feature-extraction" and not first.endswith("Model"):
        return None  # e.g. BertForMaskedLM: the task needs the base model
    return getattr(transformers, first, None)


def _refuse_remote_code(folder: Path, config: dict[str, Any], transformers: Any) -> None:
    """A config that only the folder's own Python code can build gets a sentence, never run."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = config.get("model_type")
    names = [n for n in config.get("architectures") or [] if isinstance(n, str)]
    own_class = not names or hasattr(transformers, names[0])
    if "auto_map" in config and (model_type not in CONFIG_MAPPING_NAMES or not own_class):
        raise ExportError(f"The model in '{folder.name}' needs Python code shipped with the folder "
                          "(its config has 'auto_map'); that code is never run here, so this "
                          "model cannot be built from its folder.")
    if not isinstance(model_type, str) or not model_type:
        raise ExportError(f"The {CONFIG_FILE} in '{folder.name}' names no model_type, so the "
                          "architecture is unknown; give it with --arch.")
    if model_type not in CONFIG_MAPPING_NAMES:
        raise ExportError(f"The model type '{model_type}' in '{folder.name}' is not one that the "
                          f"installed transformers ({transformers.__version__}) knows; update "
                          "transformers or give the architecture with --arch.")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ExportError("This is a Hugging Face model folder, which needs the 'transformers' "
                          "package; install it (pip install transformers) and try again.") from None
    return transformers


def has_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in WEIGHT_FILES)


def runnable_label(folder: Path, task: str | None = None, pooling: bool = False) -> str:
    """How a model folder runs for `task` (default: the config's), from config.json alone
    (transformers is not imported): 'Hugging Face: BertModel (feature-extraction)'."""
    config = folder_config(folder)
    default = infer_task(config)
    task = check_task(task or default)
    names = [n for n in config.get("architectures") or [] if isinstance(n, str)]
    first = names[0] if names and task == default else ""
    if not first or (task == "feature-extraction" and not first.endswith("Model")):
        first = f"{TASKS[task]} for '{config.get('model_type') or 'unknown'}'"
    return f"Hugging Face: {first} ({task})" + (" + sentence pooling" if pooling else "")
