"""A row of the report's table: one named tensor's data, grad and autograd facts, frozen when
the report is made (the derive stage builds them; the render stage lays them out)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import format as fmt
from ..messages import t


@dataclass(frozen=True)
class TensorRow:
    """What the report shows of one tensor, read once after backward."""

    name: str
    role: str  # "input", "leaf", "intermediate", "output", "constant" or "alias"
    data: torch.Tensor
    grad: torch.Tensor | None
    grad_fn: str | None
    is_leaf: bool
    requires_grad: bool
    added: tuple[int, bool] = (
        1,
        False,
    )  # backward() calls added up in .grad, and whether it held some before
    changed: bool = False  # a grad too big to copy, changed in place after the call: not shown
    alias: str | None = None  # another name of a tensor in the report ("W" for model.2.weight)
    withheld: bool = False  # not computed: it would run the user's own backward code (a note says)
    retains: bool = False  # a non-leaf whose retain_grad() was called: backward() would fill its .grad
    on_path: str = ""  # a leaf on the output's way back without a grad: "not_asked" (inputs=[a]) or
    # "none_came" (a custom Function's backward returned None for it); "": no path

    @classmethod
    def of(
        cls,
        name: str,
        role: str,
        tensor: torch.Tensor,
        grad: torch.Tensor | None,
        value: torch.Tensor | None = None,
        added: tuple[int, bool] = (1, False),
        alias: str | None = None,
    ) -> TensorRow:
        """*value*: the tensor's value when the grads were computed (default: now); *added*:
        how many backward() calls .grad added up, and whether it held grads from before the cell."""
        return cls(
            name=name,
            role=role,
            data=tensor.detach() if value is None else value,
            grad=None if grad is None else grad.detach(),
            grad_fn=None if tensor.grad_fn is None else type(tensor.grad_fn).__name__,
            is_leaf=tensor.is_leaf,
            requires_grad=tensor.requires_grad,
            added=added,
            alias=alias,
            retains=not tensor.is_leaf and bool(getattr(tensor, "retains_grad", False)),
        )

    def grad_text(self, digits: int, max_items: int) -> str:
        """The grad told apart from its look-alikes: not computed (why), or added up over calls."""
        if self.changed:
            return t("state.changed")
        if self.withheld:
            return t("state.withheld")
        if self.grad is None:
            if not self.is_leaf:
                return t("state.retained_empty" if self.retains else "state.not_leaf")
            if not self.requires_grad:
                return t("state.no_grad")
            return t(f"state.{self.on_path or 'no_path'}")
        text = fmt.values(self.grad, digits, max_items)
        count, held = self.added
        if held:
            return t(
                "state.added_before" if count == 1 else "state.added_before_many", value=text, count=count
            )
        if count > 1:
            return t("state.added", value=text, count=count)
        return text

    @property
    def is_scalar(self) -> bool:
        return self.data.dim() == 0

    def cells(self, digits: int, max_items: int, extra: tuple[str, ...], times_input: bool) -> list[str]:
        """The row's cells; *extra*: which of "shape" and "dtype" the table has."""
        cells = [
            self.name,
            t("role.alias", name=self.alias) if self.alias else t(f"role.{self.role}"),
            fmt.values(self.data, digits, max_items),
            self.grad_text(digits, max_items),
            str(self.grad_fn),
            str(self.is_leaf),
            str(self.requires_grad),
        ]
        if "shape" in extra:
            cells.append(fmt.shape(self.data))
        if "dtype" in extra:
            cells.append(fmt.dtype(self.data))
        if times_input:  # (right after the grad column)
            grad = self.grad if self.role in ("input", "leaf") else None
            cells.insert(4, "" if grad is None else fmt.values(grad * self.data, digits, max_items))
        return cells
