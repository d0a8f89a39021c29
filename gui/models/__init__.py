"""Qt item models over core results: lazy, one Python object per row at most, no widgets."""
