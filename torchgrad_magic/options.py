"""One options object for the engine: the magic fills it from its flags, and
:func:`torchgrad_magic.grad` takes it (or the same names as keyword arguments).

Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .capture.spec import GradError
from .messages import t

GRAPH_KINDS = ("simple", "full", "unfold")


@dataclass(frozen=True)
class GradOptions:
    """Everything ``%%grad`` can be asked for (see ``%%grad?`` and the README).

    ``wrt`` is a string (``"u=3 v=4"``), a list of such strings or a mapping
    ``{"x": 3.0}``; ``graph`` is ``None``, ``"simple"``, ``"full"``, ``"unfold"`` (loops drawn step by step) or a depth (an int: how far
    a model's modules are unfolded; ``"simple"`` is one box per layer);
    ``plot_range`` is ``"a:b"`` or ``(a, b)``; ``expect`` is ``"38"``,
    ``"u=43 v=20"`` or a list of such items.
    """

    wrt: Any = None
    of: str | None = None
    retain_grad: bool = False
    dtype: Any = None
    device: Any = None
    digits: int = 4
    max_items: int = 6
    lang: str | None = None
    plot: bool = False
    plot_range: Any = None
    save: str | None = None
    order: int = 1
    hessian: bool = False
    jacobian: bool = False
    check: bool = False
    symbolic: bool = False
    expect: Any = None
    times_input: bool = False
    graph: str | int | bool | None = None  # True means "simple"; an int: a model's depth
    steps: bool = False
    explore: Any = None  # --explore: None (off), True (default ranges) or "x=-2:2"
    quiz: bool = False  # the report as questions, answers hidden (result.quiz)

    def validated(self) -> GradOptions:
        """A copy with implied flags filled in; GradError for values that cannot work."""
        order = self.order
        if not isinstance(order, int) or isinstance(order, bool) or not 1 <= order <= 10:
            raise GradError(t("calc.bad_order", order=order))
        graph: str | int | bool | None = (
            "simple" if self.graph is True else (self.graph if self.graph not in (None, False, "") else None)
        )
        if isinstance(graph, str) and graph.isdigit():
            graph = int(graph)
        depth = isinstance(graph, int) and not isinstance(graph, bool) and 0 <= graph <= 20
        if graph not in (None, *GRAPH_KINDS) and not depth:
            raise GradError(t("graph.bad", value=self.graph))
        plot = bool(self.plot) or self.save is not None or self.plot_range is not None
        return dataclasses.replace(self, graph=graph, plot=plot)

    @property
    def needs_replay(self) -> bool:
        """Whether an extra evaluates the recorded computation again."""
        return (
            self.plot or self.check or self.symbolic or self.jacobian or self.hessian or self.order > 1
        ) or self.explore not in (None, False, "")

    @property
    def needs_record(self) -> bool:
        """Whether the run records the computation (extras evaluate it; --steps reads its constants)."""
        return self.needs_replay or self.steps

    def replace(self, **changes: Any) -> GradOptions:
        return dataclasses.replace(self, **changes)


FIELDS = tuple(f.name for f in dataclasses.fields(GradOptions))
