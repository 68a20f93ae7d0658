"""The engine behind ``%%grad``, usable without IPython.

One call, one direction::

    parse --wrt -> make fresh leaf tensors -> run the cell -> find the output
    -> backward (unless the cell did) -> GradResult

``grad("y = 3 * x ** 2", wrt="x=3")`` runs the code in a fresh namespace;
pass ``namespace=`` to run it in yours, or ``shell=`` (an IPython
``InteractiveShell``) to run it as a real cell, which is what the magic does.
"""

from __future__ import annotations

import ast
import contextlib
import linecache
import numbers
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from . import format as fmt
from .result import GradResult, TensorRow
from .spec import GradError, WrtSpec, check_name, parse_wrt

__all__ = ["CellError", "GradError", "GradResult", "grad"]

NONLEAF_WARNING = r"The \.grad attribute of a Tensor that is not a leaf Tensor"
DTYPES = {
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
}


class CellError(GradError):
    """The cell's own code raised; its traceback was already shown to the user."""

    def __init__(self, error: BaseException):
        self.error = error
        what = "was interrupted" if isinstance(error, KeyboardInterrupt) else f"raised {type(error).__name__}"
        super().__init__(f"the cell {what} (traceback above); no gradients were computed")


# ---------------------------------------------------------------------------
# running the cell
# ---------------------------------------------------------------------------
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
        exec(compile(tree, filename, "exec"), self.namespace)
        if last is None:
            return None
        return eval(compile(last, filename, "eval"), self.namespace)


class ShellRunner:
    """Runs the cell through ``shell.run_cell`` so magics and tracebacks work as usual.

    The value of the cell's last expression is caught instead of being shown
    as ``Out[n]`` (the report shows it), and it is not kept in ``_``/``Out``.
    """

    def __init__(self, shell: Any):
        self.shell = shell
        self.namespace = shell.user_ns

    def python_source(self, cell: str) -> str:
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


class _Recorder(TorchFunctionMode):
    """Watches the cell's torch calls: backward() calls, non-leaf ``.grad`` reads,
    and (with ``retain``) keeps the grad of every non-leaf tensor it makes."""

    def __init__(self, retain: bool):
        super().__init__()
        self.retain = retain
        self.backward_targets: list[torch.Tensor] = []
        self.nonleaf_reads: dict[int, torch.Tensor] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.backward or func is torch.autograd.backward:
            target = args[0] if args else kwargs.get("tensors")
            if isinstance(target, (list, tuple)):
                target = target[0] if target else None
            if isinstance(target, torch.Tensor):
                self.backward_targets.append(target)
        elif getattr(func, "__self__", None) is torch.Tensor.grad and args:
            t = args[0]
            if isinstance(t, torch.Tensor) and not t.is_leaf and not t.retains_grad:
                self.nonleaf_reads.setdefault(id(t), t)
        out = func(*args, **kwargs)
        if self.retain:
            _retain(out)
        return out


def _retain(out: Any) -> None:
    if isinstance(out, torch.Tensor):
        if out.requires_grad and not out.is_leaf and not out.retains_grad:
            out.retain_grad()
    elif isinstance(out, (tuple, list)):
        for item in out:
            _retain(item)


@contextlib.contextmanager
def _torch_state(dtype: torch.dtype | None) -> Iterator[None]:
    """Grad mode on (and the default dtype if asked) while inside; everything
    restored on the way out, also after errors and KeyboardInterrupt."""
    grad_mode = torch.is_grad_enabled()
    anomaly = torch.is_anomaly_enabled()
    anomaly_nan = torch.is_anomaly_check_nan_enabled()
    default_dtype = torch.get_default_dtype()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=NONLEAF_WARNING)
            torch.set_grad_enabled(True)
            if dtype is not None:
                torch.set_default_dtype(dtype)
            yield
    finally:
        torch.set_grad_enabled(grad_mode)
        torch.set_anomaly_enabled(anomaly, anomaly_nan)
        torch.set_default_dtype(default_dtype)


# ---------------------------------------------------------------------------
# leaves
# ---------------------------------------------------------------------------
def _dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).removeprefix("torch.")]
    except KeyError:
        raise GradError(f"--dtype {dtype}: use one of float16, bfloat16, float32, float64") from None


def _device(device: Any) -> torch.device | None:
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise GradError(f"--device {device}: not a device name (try cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GradError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return dev


def _evaluate(spec: WrtSpec, namespace: dict[str, Any], made: dict[str, Any]) -> Any:
    if spec.has_value:
        return spec.value
    if spec.expr is None:
        if spec.name in made:
            return made[spec.name]
        if spec.name not in namespace:
            raise GradError(
                f"--wrt {spec.name}: there is no variable '{spec.name}' yet; "
                f"give a starting value, e.g. --wrt {spec.name}=3"
            )
        return namespace[spec.name]
    try:
        code = compile(spec.expr, "<--wrt>", "eval")
    except SyntaxError:
        raise GradError(f"--wrt {spec}: '{spec.expr}' is not a valid Python expression") from None
    try:
        return eval(code, namespace, dict(made))
    except NameError as e:
        raise GradError(f"--wrt {spec}: {e}") from None
    except Exception as e:
        raise GradError(f"--wrt {spec}: computing the value raised {type(e).__name__}: {e}") from None


def _to_leaf(
    spec: WrtSpec, value: Any, dtype: torch.dtype | None, device: torch.device | None
) -> torch.Tensor:
    where = f"--wrt {spec}"
    if isinstance(value, torch.Tensor):
        t = value.detach().clone()
        if t.dtype == torch.bool or not (t.is_floating_point() or t.is_complex()):
            raise GradError(
                f"{where}: {spec.name} would be an integer or boolean tensor ({fmt.dtype(t)}), and only floating-point "
                f"tensors can require grad; make it float (e.g. torch.arange(5.0) or .float())"
            )
    else:
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            raise GradError(
                f"{where}: {spec.name} is a boolean; gradients need numbers, e.g. --wrt {spec.name}=1.0"
            )
        if value is None or isinstance(value, (str, bytes, dict, set)):
            raise GradError(
                f"{where}: {spec.name} is {type(value).__name__}, not a number, list or tensor; "
                f"e.g. --wrt {spec.name}=3 or --wrt {spec.name}=torch.linspace(-20, 20, 20)"
            )
        try:
            t = (
                torch.as_tensor(value).clone()
                if not isinstance(value, numbers.Number)
                else torch.tensor(value)
            )
        except (TypeError, ValueError, RuntimeError) as e:
            raise GradError(f"{where}: can't make a tensor from {type(value).__name__}: {e}") from None
        if t.dtype == torch.bool:
            raise GradError(f"{where}: {spec.name} holds booleans; gradients need numbers (use 0.0 and 1.0)")
        if not (t.is_floating_point() or t.is_complex()):
            t = t.to(dtype or torch.get_default_dtype())
    if dtype is not None and t.is_floating_point():
        t = t.to(dtype)
    if device is not None:
        t = t.to(device)
    return t.requires_grad_(True)


def _make_leaves(specs: list[WrtSpec], namespace: dict[str, Any], dtype, device) -> dict[str, torch.Tensor]:
    made: dict[str, torch.Tensor] = {}
    for spec in specs:
        made[spec.name] = _to_leaf(spec, _evaluate(spec, namespace, made), dtype, device)
    return made


# ---------------------------------------------------------------------------
# the graph
# ---------------------------------------------------------------------------
@dataclass
class _Graph:
    """What lies behind one tensor: its backward nodes and the leaves they reach."""

    nodes: set[int] = field(default_factory=set)
    leaves: dict[int, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def of(cls, t: torch.Tensor) -> _Graph:
        graph = cls()
        if t.grad_fn is None:
            if t.requires_grad:
                graph.leaves[id(t)] = t
            return graph
        stack = [t.grad_fn]
        while stack:
            fn = stack.pop()
            if id(fn) in graph.nodes:
                continue
            graph.nodes.add(id(fn))
            variable = getattr(fn, "variable", None)
            if isinstance(variable, torch.Tensor):
                graph.leaves[id(variable)] = variable
            stack.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)
        return graph


class _Names:
    """Names of the user's tensors, preferring what the cell assigned."""

    def __init__(self, namespace: dict[str, Any], preferred: list[str]):
        self.by_id: dict[int, str] = {}
        for name in preferred:
            self._add(name, namespace.get(name))
        for name, value in namespace.items():
            if not name.startswith("_") and name not in ("In", "Out"):
                self._add(name, value)

    def _add(self, name: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            self.by_id.setdefault(id(value), name)

    def get(self, t: torch.Tensor, default: str | None = None) -> str | None:
        return self.by_id.get(id(t), default)


def assigned_names(tree: ast.AST) -> list[str]:
    """Names the cell stores to, ordered by their last assignment (nested
    function, class, lambda and comprehension scopes are skipped)."""
    names: list[str] = []

    class Visitor(ast.NodeVisitor):
        def visit_Name(self, node: ast.Name) -> None:
            if isinstance(node.ctx, ast.Store):
                if node.id in names:
                    names.remove(node.id)
                names.append(node.id)

        def _skip(self, node: ast.AST) -> None:
            pass

        visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _skip
        visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _skip

    Visitor().visit(tree)
    return names


# ---------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------
def grad(
    source: str,
    wrt: Any = None,
    *,
    of: str | None = None,
    retain_grad: bool = False,
    dtype: Any = None,
    device: Any = None,
    namespace: dict[str, Any] | None = None,
    shell: Any = None,
    digits: int = 4,
    max_items: int = 6,
) -> GradResult:
    """Run *source*, differentiate its output and return a :class:`GradResult`.

    wrt
        ``"x=3"``, ``"u=3 v=4"``, ``["x=torch.linspace(-20, 20, 20)"]`` or
        ``{"x": 3.0}``: each name becomes a fresh leaf tensor with
        ``requires_grad=True`` (a bare ``"x"`` copies the existing ``x``).
        Without it, the named leaf tensors the cell's output depends on are used.
    of
        the name of the output; by default the tensor the cell called
        ``backward()`` on, else its last expression, else the last assigned
        tensor that depends on the leaves. A non-scalar output is summed.
    retain_grad
        keep and report the grads of the cell's named intermediate tensors.
    dtype, device
        for the ``wrt`` leaves (Python numbers become the default float dtype).

    Raises :class:`GradError` with a message meant for the user when the input
    cannot be used; exceptions from the code itself propagate (with ``shell=``
    they are shown as a traceback and reported as :class:`CellError`).
    """
    specs = parse_wrt(wrt)
    if of is not None:
        check_name(of, f"--of {of}")
    torch_dtype, torch_device = _dtype(dtype), _device(device)
    runner = ShellRunner(shell) if shell is not None else PlainRunner({} if namespace is None else namespace)
    ns = runner.namespace
    tree = _parse(runner.python_source(source))
    if tree is not None and not tree.body:
        raise GradError("the cell is empty: write the function under the %%grad line, e.g. y = 3 * x ** 2")
    ns.setdefault("torch", torch)

    originals: dict[str, Any] = {}
    leaves: dict[str, torch.Tensor] = {}
    try:
        with _torch_state(torch_dtype):
            leaves = _make_leaves(specs, ns, torch_dtype, torch_device)
            originals = {s.name: ns[s.name] for s in specs if s.expr is None and not s.has_value}
            ns.update(leaves)
            recorder = _Recorder(retain_grad)
            before = {name: id(value) for name, value in ns.items()}
            with recorder:
                last_value = runner.run(source)
            return _differentiate(
                ns,
                leaves,
                recorder,
                last_value,
                _assigned(tree, ns, before),
                of,
                retain_grad,
                digits,
                max_items,
            )
    finally:
        for name, original in originals.items():
            if ns.get(name) is leaves.get(name):
                ns[name] = original


def _assigned(tree: ast.Module | None, ns: dict[str, Any], before: dict[str, int]) -> list[str]:
    """Names the cell assigned, in order. Assignments hidden from the syntax
    tree (``%time y = ...``) are found by what changed in the namespace and
    come first, since their position is unknown."""
    seen = assigned_names(tree) if tree is not None else []
    changed = [n for n, v in ns.items() if before.get(n) != id(v) and not n.startswith("_")]
    return [n for n in changed if n not in seen] + [n for n in seen if n in ns]


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def _differentiate(
    ns: dict[str, Any],
    wrt_leaves: dict[str, torch.Tensor],
    recorder: _Recorder,
    last_value: Any,
    assigned: list[str],
    of: str | None,
    retain_grad: bool,
    digits: int,
    max_items: int,
) -> GradResult:
    names = _Names(ns, [*wrt_leaves, *assigned])
    graphs: dict[int, _Graph] = {}

    def graph(t: torch.Tensor) -> _Graph:
        if id(t) not in graphs:
            graphs[id(t)] = _Graph.of(t)
        return graphs[id(t)]

    wrt_ids = {id(t) for t in wrt_leaves.values()}

    def depends(t: torch.Tensor) -> bool:
        if wrt_ids:
            return bool(wrt_ids & graph(t).leaves.keys())
        return t.grad_fn is not None and any(names.get(v) for v in graph(t).leaves.values())

    out_name, output = _find_output(ns, names, recorder, last_value, assigned, of, depends, wrt_leaves)
    notes: list[str] = []

    # the leaves we report: the --wrt ones, or the cell's named leaves
    if wrt_leaves:
        leaves = dict(wrt_leaves)
    else:
        found = {names.get(v): v for v in graph(output).leaves.values() if names.get(v)}
        order = {name: i for i, name in enumerate(assigned)}
        leaves = dict(sorted(found.items(), key=lambda kv: order.get(kv[0], len(order))))

    nodes = graph(output).nodes
    intermediates: dict[str, torch.Tensor] = {}
    if retain_grad:
        for name in assigned:
            t = ns.get(name)
            if (
                isinstance(t, torch.Tensor)
                and t is not output
                and t.grad_fn is not None
                and id(t.grad_fn) in nodes
                and names.get(t) == name
            ):
                intermediates[name] = t

    summed = False
    calls = len(recorder.backward_targets)
    if calls:
        grads = {name: leaf.grad for name, leaf in leaves.items()}
        inter_grads = {n: t.grad if t.retains_grad else None for n, t in intermediates.items()}
        if calls == 1:
            notes.append("the cell called backward() itself, so %%grad did not call it again.")
        else:
            notes.append(
                f"the cell called backward() {calls} times; PyTorch adds each call's grads into .grad."
            )
    else:
        if output.is_complex():
            raise GradError(
                f"{out_name} is complex; backward() needs a real number: differentiate {out_name}.abs() "
                f"or {out_name}.real instead (--of)"
            )
        target = output
        if output.numel() != 1:
            target, summed = output.sum(), True
            notes.append(
                f"{out_name} has {output.numel()} elements and backward() needs one number, "
                f"so the grads are of {out_name}.sum() (as in {out_name}.sum().backward())."
            )
        inputs = [*leaves.values(), *intermediates.values()]
        try:
            computed = torch.autograd.grad(target, inputs, allow_unused=True)
        except RuntimeError as e:
            raise GradError(f"backward through {out_name} failed: {e}") from None
        grads = dict(zip(leaves, computed[: len(leaves)], strict=True))
        inter_grads = dict(zip(intermediates, computed[len(leaves) :], strict=True))
        for name, leaf in leaves.items():
            if leaf.grad is not None and id(leaf) not in wrt_ids:
                notes.append(
                    f"{name}.grad held {fmt.values(leaf.grad, digits, max_items)} from earlier code; "
                    f"%%grad replaced it with this cell's grad (backward() would have added the two)."
                )
            leaf.grad = grads[name]
        for name, t in intermediates.items():
            if t.retains_grad:
                t.grad = inter_grads[name]

    for name, g in grads.items():
        if g is None:
            notes.append(f"{out_name} does not depend on {name}, so its grad is None.")

    rows = [
        TensorRow.of(name, "input" if wrt_leaves else "leaf", t, grads[name]) for name, t in leaves.items()
    ]
    rows += [TensorRow.of(name, "intermediate", t, inter_grads[name]) for name, t in intermediates.items()]
    if all(output is not t for t in leaves.values()):
        own = output.grad if output.is_leaf or output.retains_grad else None
        rows.append(TensorRow.of(out_name, "output", output, own))
    notes += _nonleaf_notes(recorder, names, rows, leaves)

    return GradResult(
        output=output,
        output_name=out_name,
        leaves=leaves,
        grads=grads,
        rows=rows,
        summed=summed,
        backward_calls=calls,
        notes=notes,
        digits=digits,
        max_items=max_items,
    )


def _nonleaf_notes(recorder: _Recorder, names: _Names, rows: list[TensorRow], leaves: dict) -> list[str]:
    notes = []
    leaf_names = ", ".join(leaves) or "the leaves"
    read: set[str] = set()
    for t in recorder.nonleaf_reads.values():
        name = names.get(t, "a tensor")
        read.add(name)
        fn = type(t.grad_fn).__name__ if t.grad_fn is not None else "an operation"
        notes.append(
            f"the cell read {name}.grad, which is None: {name} is not a leaf (it was computed by {fn}), "
            f"and backward() fills .grad only for leaf tensors ({leaf_names}). To keep it, use "
            f"--retain-grad or call {name}.retain_grad() before backward()."
        )
    quiet = [r.name for r in rows if not r.is_leaf and r.grad is None and r.name not in read]
    if quiet:
        who = ", ".join(quiet)
        verb = "is not a leaf" if len(quiet) == 1 else "are not leaves"
        notes.append(f"{who} {verb}, so PyTorch keeps no .grad for it (None); --retain-grad keeps it.")
    return notes


def _find_output(
    ns: dict[str, Any],
    names: _Names,
    recorder: _Recorder,
    last_value: Any,
    assigned: list[str],
    of: str | None,
    depends,
    wrt_leaves: dict[str, torch.Tensor],
) -> tuple[str, torch.Tensor]:
    wrt_text = ", ".join(wrt_leaves)
    hint = (
        "was it made with torch.tensor(...), .detach(), .item() or under torch.no_grad()?"
        if wrt_leaves
        else "create the input with requires_grad=True, or use --wrt x=3."
    )

    def no_dependence(name: str, value: torch.Tensor) -> GradError:
        if value.is_leaf and value.requires_grad:
            return GradError(
                f"{name} is a leaf and the cell computed nothing from it; add the function, "
                f"e.g. y = 3 * {name} ** 2"
            )
        if wrt_leaves:
            return GradError(f"{name} does not depend on {wrt_text}: there is no path back to it; {hint}")
        return GradError(f"{name} does not depend on any leaf tensor that requires grad; {hint}")

    if of is not None:
        if of not in ns:
            raise GradError(f"--of {of}: there is no variable '{of}' after the cell ran")
        value = ns[of]
        if not isinstance(value, torch.Tensor):
            raise GradError(f"--of {of}: {of} is {type(value).__name__}, not a tensor")
        if not (depends(value) or any(value is t for t in wrt_leaves.values())):
            raise no_dependence(of, value)
        return of, value

    for target in reversed(recorder.backward_targets):
        return names.get(target, "out"), target

    tensors: list[tuple[str, torch.Tensor]] = []
    if isinstance(last_value, torch.Tensor):
        tensors.append((names.get(last_value, "out"), last_value))
    for name in reversed(assigned):
        value = ns.get(name)
        if isinstance(value, torch.Tensor) and all(value is not t for t in wrt_leaves.values()):
            tensors.append((name, value))
    for name, value in tensors:
        if depends(value):
            return name, value
    if tensors:
        raise no_dependence(*tensors[0])
    if last_value is not None:
        what, value = "the cell's last value", last_value
    elif assigned and assigned[-1] in ns:
        what, value = assigned[-1], ns[assigned[-1]]
    else:
        what, value = None, None
    if what is not None and isinstance(value, (numbers.Number, list, tuple, dict)):
        extra = (
            " (.item() and float() give a plain number, which has no graph)"
            if isinstance(value, numbers.Number)
            else ""
        )
        raise GradError(
            f"{what} is a {type(value).__name__}, not a tensor{extra}; assign the tensor to "
            f"differentiate (y = ...) or name it with --of"
        )
    target = f" from {wrt_text}" if wrt_leaves else ""
    raise GradError(
        f"the cell made no tensor output{target}: assign one (y = 3 * x ** 2) or end with an "
        "expression, or name it with --of"
    )
