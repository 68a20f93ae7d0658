"""Capture: parse the line, make or find the leaves, run the cell once under observation, keep a record.

Nothing here explains anything: it keeps only what cannot be recovered after the cell
(outputs, flags, versions, grads). Every private PyTorch/IPython touch is in ``internals``."""
