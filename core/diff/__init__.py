"""Comparing checkpoints: `structure` (keys, shapes, dtypes; a checkpoint against a model),
`values` (streamed value differences), `remap` (renames that make keys line up, applied through the
converter) and `render` (text and JSON of a diff)."""
