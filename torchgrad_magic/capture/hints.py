"""Plain-language help for PyTorch's common autograd errors.

Matched on short, stable fragments of the message (case-insensitive), since
the exact wording differs between torch versions.
"""

from __future__ import annotations

from ..messages import t

FRAGMENTS = (
    ("implicitly created only for scalar outputs", "hint.scalar_outputs"),
    ("backward through the graph a second time", "hint.second_time"),
    ("tensors of floating point", "hint.float_only"),
    ("leaf variable that requires grad", "hint.leaf_inplace"),
    ("modified by an inplace operation", "hint.modified_inplace"),
    ("does not require grad and does not have a grad_fn", "hint.no_grad_fn"),
    ("call numpy() on tensor that requires grad", "hint.numpy"),
)


def hint_for(error: BaseException) -> str | None:
    """One line saying what *error* means and how to fix it, or None."""
    text = str(error).lower()
    for fragment, message_id in FRAGMENTS:
        if fragment in text:
            return t("hint.prefix", hint=t(message_id))
    return None


def with_hint(message: str, error: BaseException) -> str:
    """*message*, followed by the hint for *error* on its own line when there is one."""
    hint = hint_for(error)
    return f"{message}\n{hint}" if hint else message
