"""Model families recognised from tensor names and shapes alone (no config, no torch).

Each family has an anchor key (found under any prefix, e.g. 'bert.' or 'model.') and reads the
config values the shapes determine; what shapes cannot tell (the number of attention heads: a
query projection is hidden x hidden whatever the split) is listed as undetermined, never guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Shapes = dict[str, tuple[int, ...]]
HEADS = "the attention heads split the hidden size inside the matrices; shapes do not show how"
ACT_EPS = "an activation function and a norm epsilon are not stored in the weights"


@dataclass
class Match:
    family: str
    model_type: str
    prefix: str
    determined: dict[str, Any] = field(default_factory=dict)
    undetermined: dict[str, str] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    head: str | None = None  # the task head the keys show (a transformers class name)
    used: int = 0  # how many keys the layout accounts for (to rank matches)


def _layers(shapes: Shapes, pattern: str) -> int:
    found = {int(m.group(1)) for key in shapes if (m := re.match(pattern, key))}
    return max(found) + 1 if found else 0


def _within(shapes: Shapes, prefix: str) -> Shapes:
    return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}


def _bert(s: Shapes, p: str, full: Shapes) -> Match | None:
    if "encoder.layer.0.attention.self.query.weight" not in s:
        return None
    vocab, hidden = s["embeddings.word_embeddings.weight"]
    types = s.get("embeddings.token_type_embeddings.weight", (0,))[0]
    roberta = p.startswith("roberta") or types == 1
    m = Match("RoBERTa" if roberta else "BERT", "roberta" if roberta else "bert", p)
    m.determined = {"vocab_size": vocab, "hidden_size": hidden,
                    "num_hidden_layers": _layers(s, r"encoder\.layer\.(\d+)\."),
                    "intermediate_size": s["encoder.layer.0.intermediate.dense.weight"][0],
                    "max_position_embeddings": s["embeddings.position_embeddings.weight"][0],
                    "type_vocab_size": types}
    m.evidence.append(f"{p}embeddings.word_embeddings.weight {list((vocab, hidden))} and "
                      f"{p}encoder.layer.N.attention.self.query: a BERT-style encoder")
    if roberta:
        m.evidence.append("one token type" + (f" and the prefix '{p}'" if p else "")
                          + ": RoBERTa-style (position ids start after the padding index)")
    m.head = _text_head(full, p, m, "Roberta" if roberta else "Bert")
    m.undetermined |= {"num_attention_heads": HEADS, "hidden_act": ACT_EPS,
                       "layer_norm_eps": ACT_EPS}
    return m


def _text_head(full: Shapes, prefix: str, m: Match, name: str) -> str:
    if "classifier.weight" in full:
        m.determined["num_labels"] = full["classifier.weight"][0]
        m.undetermined["task"] = ("a classifier of this shape serves sequence and token "
                                  "classification alike")
        return f"{name}For(Sequence|Token)Classification"
    if any(k.startswith(("cls.predictions", "lm_head.")) for k in full):
        return f"{name}ForMaskedLM"
    return f"{name}Model"


def _vit(s: Shapes, p: str, full: Shapes) -> Match | None:
    hidden, channels, patch, _ = s["embeddings.patch_embeddings.projection.weight"]
    positions = s.get("embeddings.position_embeddings", (1, 1, hidden))[1] - 1
    side = math.isqrt(max(positions, 0))
    m = Match("ViT", "vit", p)
    old = "encoder.layer.0.intermediate.dense.weight" in s  # the layout before transformers 5
    m.determined = {"hidden_size": hidden, "num_channels": channels, "patch_size": patch,
                    "num_hidden_layers": _layers(s, r"(?:encoder\.layer|layers)\.(\d+)\."),
                    "intermediate_size": s["encoder.layer.0.intermediate.dense.weight" if old
                                           else "layers.0.mlp.fc1.weight"][0]}
    if side * side == positions:
        m.determined["image_size"] = side * patch
    else:
        m.undetermined["image_size"] = f"{positions} patches do not form a square grid"
    m.evidence.append(f"{p}embeddings.patch_embeddings.projection.weight "
                      f"{[hidden, channels, patch, patch]}: a ViT patch embedding; "
                      f"{positions} patch positions + 1 class token")
    if "classifier.weight" in full:
        m.determined["num_labels"] = full["classifier.weight"][0]
        m.head = "ViTForImageClassification"
    else:
        m.head = "ViTModel"
    m.undetermined |= {"num_attention_heads": HEADS, "hidden_act": ACT_EPS}
    return m


def _gpt2(s: Shapes, p: str, full: Shapes) -> Match | None:
    if "wte.weight" not in s:
        return None
    vocab, hidden = s["wte.weight"]
    m = Match("GPT-2", "gpt2", p)
    m.determined = {"vocab_size": vocab, "n_embd": hidden, "n_layer": _layers(s, r"h\.(\d+)\."),
                    "n_positions": s.get("wpe.weight", (None,))[0],
                    "n_inner": s.get("h.0.mlp.c_fc.weight", (None, None))[1]}
    m.evidence.append(f"{p}h.N.attn.c_attn.weight {list(s['h.0.attn.c_attn.weight'])} "
                      "(Conv1D, 3 x hidden wide) and wte/wpe embeddings: a GPT-2 decoder")
    if "score.weight" in full:
        m.determined["num_labels"] = full["score.weight"][0]
        m.head = "GPT2ForSequenceClassification"
    else:
        m.head = "GPT2LMHeadModel" if "lm_head.weight" in full or p == "transformer." \
            else "GPT2Model"
    m.undetermined = {"n_head": HEADS, "activation_function": ACT_EPS}
    return m


def _llama(s: Shapes, p: str, full: Shapes) -> Match | None:
    if "layers.0.mlp.gate_proj.weight" not in s or "embed_tokens.weight" not in s:
        return None
    vocab, hidden = s["embed_tokens.weight"]
    kv_width = s.get("layers.0.self_attn.k_proj.weight", (None,))[0]
    m = Match("LLaMA-style", "llama", p)
    m.determined = {"vocab_size": vocab, "hidden_size": hidden,
                    "num_hidden_layers": _layers(s, r"layers\.(\d+)\."),
                    "intermediate_size": s["layers.0.mlp.gate_proj.weight"][0],
                    "num_key_value_heads x head_dim": kv_width}
    bias = "layers.0.self_attn.q_proj.bias" in s
    m.evidence.append(f"{p}layers.N.self_attn.q_proj/k_proj/v_proj and mlp.gate_proj/up_proj/"
                      "down_proj: a LLaMA-style decoder (Mistral and Qwen2 share this layout"
                      + ("; q_proj has a bias, as Qwen2 has" if bias else "") + ")")
    if bias:
        m.model_type = "qwen2"
    tied = "lm_head.weight" not in full
    m.head = "LlamaForCausalLM" if p == "model." or not tied else "LlamaModel"
    m.undetermined = {"num_attention_heads": HEADS, "num_key_value_heads": HEADS,
                      "max_position_embeddings": "rotary positions store no table of positions",
                      "rope_theta": "a rotary base is not stored in the weights",
                      "rms_norm_eps": ACT_EPS}
    if tied and p == "model.":
        m.determined["tie_word_embeddings"] = True
    return m


def _clip(s: Shapes, p: str, full: Shapes) -> Match | None:
    if "vision_model.embeddings.patch_embedding.weight" not in s:
        return None
    vocab, text_hidden = s["text_model.embeddings.token_embedding.weight"]
    v_hidden, channels, patch, _ = s["vision_model.embeddings.patch_embedding.weight"]
    positions = s["vision_model.embeddings.position_embedding.weight"][0] - 1
    side = math.isqrt(positions)
    m = Match("CLIP", "clip", p, head="CLIPModel")
    m.determined = {
        "text_config.vocab_size": vocab, "text_config.hidden_size": text_hidden,
        "text_config.num_hidden_layers": _layers(s, r"text_model\.encoder\.layers\.(\d+)\."),
        "text_config.intermediate_size": s["text_model.encoder.layers.0.mlp.fc1.weight"][0],
        "text_config.max_position_embeddings":
            s["text_model.embeddings.position_embedding.weight"][0],
        "vision_config.hidden_size": v_hidden, "vision_config.patch_size": patch,
        "vision_config.num_channels": channels,
        "vision_config.num_hidden_layers": _layers(s, r"vision_model\.encoder\.layers\.(\d+)\."),
        "vision_config.intermediate_size": s["vision_model.encoder.layers.0.mlp.fc1.weight"][0],
        "projection_dim": s.get("visual_projection.weight", (None,))[0]}
    if side * side == positions:
        m.determined["vision_config.image_size"] = side * patch
    m.evidence.append(f"{p}text_model.* and {p}vision_model.* towers with text/visual "
                      "projections: a CLIP dual encoder")
    m.undetermined = {"text_config.num_attention_heads": HEADS,
                      "vision_config.num_attention_heads": HEADS, "hidden_act": ACT_EPS}
    return m


# family reader, its anchor key (the prefix is whatever comes before it)
FAMILIES: list[tuple[Callable[[Shapes, str, Shapes], Match | None], str]] = [
    (_clip, "text_model.embeddings.token_embedding.weight"),
    (_vit, "embeddings.patch_embeddings.projection.weight"),
    (_bert, "embeddings.word_embeddings.weight"),
    (_gpt2, "h.0.attn.c_attn.weight"),
    (_llama, "layers.0.self_attn.q_proj.weight"),
]


def recognise(shapes: Shapes) -> Match | None:
    """The family whose layout accounts for the most keys (None when no anchor is found)."""
    best: Match | None = None
    for reader, anchor in FAMILIES:
        for key in shapes:
            if not key.endswith(anchor):
                continue
            prefix = key[:-len(anchor)]
            if prefix and not prefix.endswith("."):
                continue
            inner = _within(shapes, prefix)
            try:
                match = reader(inner, prefix, shapes)
            except (KeyError, ValueError, IndexError, TypeError):
                match = None  # the anchor is there but the rest of the layout is not
            if match is not None:
                match.used = len(inner)
                if best is None or match.used > best.used:
                    best = match
    return best
