"""Running the cell: as a real IPython cell, as plain Python, or again with other inputs."""

from __future__ import annotations

import ast
import contextlib
import linecache
import os
import sys
import warnings
from typing import Any

from .hints import hint_for, with_hint
from .messages import t
from .spec import GradError


class CellError(GradError):
    """The cell's own code raised; its traceback was already shown to the user."""

    def __init__(self, error: BaseException):
        self.error = error
        if isinstance(error, KeyboardInterrupt):
            message = t("err.cell_interrupted")
        else:
            message = with_hint(t("err.cell_raised", ename=type(error).__name__), error)
        super().__init__(message)


class PlainRunner:
    """Runs code with ``exec`` in a dict; the last expression's value is kept."""

    _count = 0

    def __init__(self, namespace: dict[str, Any]):
        self.namespace = namespace
        self.namespace.setdefault("__builtins__", __builtins__)

    def python_source(self, cell: str) -> str:
        return cell

    def run(self, cell: str) -> Any:
        PlainRunner._count += 1
        filename = f"<grad-cell-{PlainRunner._count}>"
        lines = cell.splitlines(keepends=True)
        linecache.cache[filename] = (len(cell), None, lines, filename)
        tree = ast.parse(cell, filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        try:
            exec(compile(tree, filename, "exec"), self.namespace)
            return None if last is None else eval(compile(last, filename, "eval"), self.namespace)
        except Exception as e:
            hint = hint_for(e)
            if hint and hasattr(e, "add_note"):
                e.add_note(hint)
            raise


class ShellRunner:
    """Runs the cell through ``shell.run_cell`` so magics and tracebacks work as usual.

    The value of the cell's last expression is caught instead of being shown
    as ``Out[n]`` (the report shows it), and it is not kept in ``_``/``Out``.
    """

    def __init__(self, shell: Any):
        self.shell = shell
        self.namespace = shell.user_ns

    def python_source(self, cell: str) -> str:
        """The cell as plain Python. Plain Python is left as it is (IPython's
        transforms only change what Python cannot parse: %magics, !commands, ?)."""
        try:
            ast.parse(cell)
            return cell
        except SyntaxError:
            return self.shell.transform_cell(cell)

    def run(self, cell: str) -> Any:
        caught: list[Any] = []

        def hook(value: Any) -> None:
            if value is not None:
                caught.append(value)

        trap = self.shell.display_trap
        saved = sys.displayhook, trap.hook
        sys.displayhook = trap.hook = hook
        try:
            outcome = self.shell.run_cell(cell, store_history=False)
        finally:
            sys.displayhook, trap.hook = saved
        error = outcome.error_before_exec or outcome.error_in_exec
        if error is not None:
            raise CellError(error)
        return caught[-1] if caught else None


class Rerun:
    """The cell's computation as a function of its inputs.

    Runs the cell's code again in a shallow copy of the namespace, with some
    inputs replaced (a batch of points for plots, float64 copies for checks,
    SymPy symbols for symbolic answers) and its printing and warnings hidden.
    The user's namespace is not touched.
    """

    def __init__(
        self, code: str, namespace: dict[str, Any], inputs: dict[str, Any], out_name: str | None, summed: bool
    ):
        self.code, self.namespace, self.inputs = code, namespace, inputs
        self.out_name, self.summed = out_name, summed

    @classmethod
    def of(
        cls, result: Any, code: str, ns: dict[str, Any], last_value: Any, assigned: list[str]
    ) -> Rerun | str:
        """A Rerun for *result*'s cell, or the reason (a note) why there is none."""
        resets = [name for name in result.leaves if name in assigned]
        if resets:
            return t("plot.sets_input", name=resets[0])
        if ns.get(result.output_name) is result.output:
            out_name = result.output_name
        elif last_value is result.output:
            out_name = None
        else:
            return t("rerun.unnamed", out=result.output_name)
        inputs = {name: leaf.detach() for name, leaf in result.leaves.items()}
        return cls(code, ns, inputs, out_name, result.summed)

    def output(self, values: dict[str, Any], extra: dict[str, Any] | None = None) -> Any:
        scope = dict(self.namespace)
        scope.update(self.inputs)
        scope.update(extra or {})
        scope.update(values)
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            last = PlainRunner(scope).run(self.code)
        return last if self.out_name is None else scope[self.out_name]

    def scalar(self, values: dict[str, Any], extra: dict[str, Any] | None = None) -> Any:
        out = self.output(values, extra)
        return out.sum() if self.summed else out
