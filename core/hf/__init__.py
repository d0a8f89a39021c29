"""Hugging Face model folders without code: the architecture from config.json (never the folder's
own code), strict loading by the model class's rules, task-aware inputs and outputs, pooling of
sentence-transformers folders, and identification of a checkpoint from its keys and shapes.

transformers is optional: everything that builds a model imports it inside functions, and
identification from keys and shapes needs neither transformers nor torch.
"""
