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
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from . import format as fmt
from .messages import t, using
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
        if isinstance(error, KeyboardInterrupt):
            super().__init__(t("err.cell_interrupted"))
        else:
            super().__init__(t("err.cell_raised", ename=type(error).__name__))


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
            tensor = args[0]
            if isinstance(tensor, torch.Tensor) and not tensor.is_leaf and not tensor.retains_grad:
                self.nonleaf_reads.setdefault(id(tensor), tensor)
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
        raise GradError(t("err.dtype", value=dtype)) from None


def _device(device: Any) -> torch.device | None:
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise GradError(t("err.device", value=device)) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GradError(t("err.no_cuda", value=device))
    return dev


def _evaluate(spec: WrtSpec, namespace: dict[str, Any], made: dict[str, Any]) -> Any:
    if spec.has_value:
        return spec.value
    if spec.expr is None:
        if spec.name in made:
            return made[spec.name]
        if spec.name not in namespace:
            raise GradError(t("err.wrt_undefined", name=spec.name))
        return namespace[spec.name]
    try:
        code = compile(spec.expr, "<--wrt>", "eval")
    except SyntaxError:
        raise GradError(t("err.wrt_syntax", where=f"--wrt {spec}", expr=spec.expr)) from None
    try:
        return eval(code, namespace, dict(made))
    except NameError as e:
        missing = getattr(e, "name", None) or str(e)
        raise GradError(t("err.wrt_name_error", where=f"--wrt {spec}", missing=missing)) from None
    except Exception as e:
        raise GradError(t("err.wrt_raised", where=f"--wrt {spec}", ename=type(e).__name__, error=e)) from None


def _to_leaf(
    spec: WrtSpec, value: Any, dtype: torch.dtype | None, device: torch.device | None
) -> torch.Tensor:
    where = f"--wrt {spec}"
    if isinstance(value, torch.Tensor):
        leaf = value.detach().clone()
        if leaf.dtype == torch.bool or not (leaf.is_floating_point() or leaf.is_complex()):
            raise GradError(t("err.wrt_int_tensor", where=where, name=spec.name, dtype=fmt.dtype(leaf)))
    else:
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            raise GradError(t("err.wrt_bool", where=where, name=spec.name))
        if value is None or isinstance(value, (str, bytes, dict, set)):
            raise GradError(t("err.wrt_type", where=where, name=spec.name, kind=type(value).__name__))
        try:
            leaf = (
                torch.as_tensor(value).clone()
                if not isinstance(value, numbers.Number)
                else torch.tensor(value)
            )
        except (TypeError, ValueError, RuntimeError) as e:
            raise GradError(t("err.wrt_convert", where=where, kind=type(value).__name__, error=e)) from None
        if leaf.dtype == torch.bool:
            raise GradError(t("err.wrt_bool_values", where=where, name=spec.name))
        if not (leaf.is_floating_point() or leaf.is_complex()):
            leaf = leaf.to(dtype or torch.get_default_dtype())
    if dtype is not None and leaf.is_floating_point():
        leaf = leaf.to(dtype)
    if device is not None:
        leaf = leaf.to(device)
    return leaf.requires_grad_(True)


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
    def of(cls, tensor: torch.Tensor) -> _Graph:
        graph = cls()
        if tensor.grad_fn is None:
            if tensor.requires_grad:
                graph.leaves[id(tensor)] = tensor
            return graph
        stack = [tensor.grad_fn]
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

    def get(self, tensor: torch.Tensor, default: str | None = None) -> str | None:
        return self.by_id.get(id(tensor), default)


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
    lang: str | None = None,
    plot: bool = False,
    plot_range: Any = None,
    save: str | None = None,
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
    digits, max_items
        significant digits of numbers, and how many values of a long tensor
        the report shows.
    lang
        ``"en"`` or ``"zh"`` for every message and the report; by default
        the locale's language.
    plot, plot_range, save
        draw the function and its derivative (``result.figure``): against a
        1-D input, or around scalar points over ``plot_range`` (``"a:b"`` or
        ``(a, b)``); ``save`` writes the figure to a ``.png`` or ``.svg`` file
        (and implies ``plot``).

    Raises :class:`GradError` with a message meant for the user when the input
    cannot be used; exceptions from the code itself propagate (with ``shell=``
    they are shown as a traceback and reported as :class:`CellError`).
    """
    options = _Options(
        wrt, of, retain_grad, dtype, device, digits, max_items, plot or save is not None, plot_range, save
    )
    with using(lang) as language:
        options.language = language
        return _run(source, options, namespace, shell)


@dataclass
class _Options:
    wrt: Any
    of: str | None
    retain_grad: bool
    dtype: Any
    device: Any
    digits: int
    max_items: int
    plot: bool
    plot_range: Any
    save: str | None
    language: str = "en"


def _run(source: str, opts: _Options, namespace: dict[str, Any] | None, shell: Any) -> GradResult:
    specs = parse_wrt(opts.wrt)
    if opts.of is not None:
        check_name(opts.of, f"--of {opts.of}")
    torch_dtype, torch_device = _dtype(opts.dtype), _device(opts.device)
    window = None
    if opts.plot:
        from . import plot

        window = opts.plot_range if isinstance(opts.plot_range, tuple) else plot.parse_range(opts.plot_range)
        plot.check_save_path(opts.save)
    runner = ShellRunner(shell) if shell is not None else PlainRunner({} if namespace is None else namespace)
    ns = runner.namespace
    code = runner.python_source(source)
    tree = _parse(code)
    if tree is not None and not tree.body:
        raise GradError(t("err.cell_empty"))
    ns.setdefault("torch", torch)

    originals: dict[str, Any] = {}
    leaves: dict[str, torch.Tensor] = {}
    try:
        with _torch_state(torch_dtype):
            leaves = _make_leaves(specs, ns, torch_dtype, torch_device)
            originals = {s.name: ns[s.name] for s in specs if s.expr is None and not s.has_value}
            ns.update(leaves)
            recorder = _Recorder(opts.retain_grad)
            before = {name: id(value) for name, value in ns.items()}
            with recorder:
                last_value = runner.run(source)
            assigned = _assigned(tree, ns, before)
            result = _differentiate(ns, leaves, recorder, last_value, assigned, opts.of, opts.retain_grad)
            result.digits, result.max_items, result.language = opts.digits, opts.max_items, opts.language
            if opts.plot:
                _draw(result, code, ns, last_value, assigned, window, opts.save)
    finally:
        for name, original in originals.items():
            if ns.get(name) is leaves.get(name):
                ns[name] = original
    return result


def _draw(
    result: GradResult, code: str, ns: dict, last_value: Any, assigned: list[str], window, save
) -> None:
    from . import plot

    evaluate = None
    resets = [name for name in result.leaves if name in assigned]
    if resets:
        result.notes.append(t("plot.sets_input", name=resets[0]))
    elif ns.get(result.output_name) is result.output or last_value is result.output:
        evaluate = _evaluator(code, ns, result, by_name=ns.get(result.output_name) is result.output)
    figure, curves, notes = plot.make_figure(result, evaluate, window, result.language)
    result.figure, result.curves = figure, curves
    result.notes.extend(notes)
    if figure is not None and save is not None:
        plot.save(figure, save)


def _evaluator(code: str, ns: dict, result: GradResult, by_name: bool):
    """``evaluate(name, grid) -> (values, slopes)``: the cell re-run under
    ``torch.func.vmap`` with *name* set to each grid point (the other inputs
    held at their values), in a copy of the namespace, with its output hidden."""
    base = {name: leaf.detach() for name, leaf in result.leaves.items()}
    out_name, summed = result.output_name, result.summed

    def function(name: str, value: torch.Tensor) -> torch.Tensor:
        scope = dict(ns)
        scope.update(base)
        scope[name] = value
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            last = PlainRunner(scope).run(code)
        out = scope[out_name] if by_name else last
        return out.sum() if summed else out

    def evaluate(name: str, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        points = grid.to(base[name].dtype).to(base[name].device)
        slopes, values = torch.func.vmap(torch.func.grad_and_value(lambda v: function(name, v)))(points)
        return values.detach().cpu(), slopes.detach().cpu()

    return evaluate


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
) -> GradResult:
    names = _Names(ns, [*wrt_leaves, *assigned])
    graphs: dict[int, _Graph] = {}

    def graph(tensor: torch.Tensor) -> _Graph:
        if id(tensor) not in graphs:
            graphs[id(tensor)] = _Graph.of(tensor)
        return graphs[id(tensor)]

    wrt_ids = {id(tensor) for tensor in wrt_leaves.values()}

    def depends(tensor: torch.Tensor) -> bool:
        if wrt_ids:
            return bool(wrt_ids & graph(tensor).leaves.keys())
        return tensor.grad_fn is not None and any(names.get(v) for v in graph(tensor).leaves.values())

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
            tensor = ns.get(name)
            if (
                isinstance(tensor, torch.Tensor)
                and tensor is not output
                and tensor.grad_fn is not None
                and id(tensor.grad_fn) in nodes
                and names.get(tensor) == name
            ):
                intermediates[name] = tensor

    summed = False
    calls = len(recorder.backward_targets)
    if calls:
        grads = {name: leaf.grad for name, leaf in leaves.items()}
        inter_grads = {n: tensor.grad if tensor.retains_grad else None for n, tensor in intermediates.items()}
        if calls == 1:
            notes.append(t("note.backward_once"))
        else:
            notes.append(t("note.backward_many", count=calls))
    else:
        if output.is_complex():
            raise GradError(t("err.complex", out=out_name))
        target = output
        if output.numel() != 1:
            target, summed = output.sum(), True
            notes.append(t("note.summed", out=out_name, count=output.numel()))
        inputs = [*leaves.values(), *intermediates.values()]
        try:
            computed = torch.autograd.grad(target, inputs, allow_unused=True)
        except RuntimeError as e:
            raise GradError(t("err.backward_failed", out=out_name, error=e)) from None
        grads = dict(zip(leaves, computed[: len(leaves)], strict=True))
        inter_grads = dict(zip(intermediates, computed[len(leaves) :], strict=True))
        for name, leaf in leaves.items():
            if leaf.grad is not None and id(leaf) not in wrt_ids:
                old = fmt.values(leaf.grad)
                notes.append(t("note.replaced", name=name, old=old))
            leaf.grad = grads[name]
        for name, tensor in intermediates.items():
            if tensor.retains_grad:
                tensor.grad = inter_grads[name]

    for name, g in grads.items():
        if g is None:
            notes.append(t("note.unused", out=out_name, name=name))

    rows = [
        TensorRow.of(name, "input" if wrt_leaves else "leaf", tensor, grads[name])
        for name, tensor in leaves.items()
    ]
    rows += [
        TensorRow.of(name, "intermediate", tensor, inter_grads[name])
        for name, tensor in intermediates.items()
    ]
    if all(output is not tensor for tensor in leaves.values()):
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
    )


def _nonleaf_notes(recorder: _Recorder, names: _Names, rows: list[TensorRow], leaves: dict) -> list[str]:
    notes = []
    leaf_names = ", ".join(leaves) or t("word.the_leaves")
    read: set[str] = set()
    for tensor in recorder.nonleaf_reads.values():
        name = names.get(tensor, t("word.a_tensor"))
        read.add(name)
        fn = type(tensor.grad_fn).__name__ if tensor.grad_fn is not None else t("word.an_operation")
        notes.append(t("note.nonleaf_read", name=name, fn=fn, leaves=leaf_names))
    quiet = [r.name for r in rows if not r.is_leaf and r.grad is None and r.name not in read]
    if quiet:
        notes.append(t("note.nonleaf_quiet", names=", ".join(quiet)))
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

    def no_dependence(name: str, value: torch.Tensor) -> GradError:
        if value.is_leaf and value.requires_grad:
            return GradError(t("err.leaf_only", name=name))
        if wrt_leaves:
            return GradError(t("err.no_path", name=name, wrt=wrt_text))
        return GradError(t("err.no_leaf", name=name))

    def is_wrt_leaf(value: torch.Tensor) -> bool:
        return any(value is leaf for leaf in wrt_leaves.values())

    if of is not None:
        if of not in ns:
            raise GradError(t("err.of_missing", name=of))
        value = ns[of]
        if not isinstance(value, torch.Tensor):
            raise GradError(t("err.of_not_tensor", name=of, kind=type(value).__name__))
        if not (depends(value) or is_wrt_leaf(value)):
            raise no_dependence(of, value)
        return of, value

    for target in reversed(recorder.backward_targets):
        return names.get(target, "out"), target

    tensors: list[tuple[str, torch.Tensor]] = []
    if isinstance(last_value, torch.Tensor):
        tensors.append((names.get(last_value, "out"), last_value))
    for name in reversed(assigned):
        value = ns.get(name)
        if isinstance(value, torch.Tensor) and not is_wrt_leaf(value):
            tensors.append((name, value))
    for name, value in tensors:
        if depends(value):
            return name, value
    if tensors:
        raise no_dependence(*tensors[0])
    if last_value is not None:
        what, value = t("word.last_value"), last_value
    elif assigned and assigned[-1] in ns:
        what, value = assigned[-1], ns[assigned[-1]]
    else:
        what, value = None, None
    if what is not None and isinstance(value, (numbers.Number, list, tuple, dict)):
        message = "err.not_tensor_number" if isinstance(value, numbers.Number) else "err.not_tensor"
        raise GradError(t(message, what=what, kind=type(value).__name__))
    if wrt_leaves:
        raise GradError(t("err.no_output_from", wrt=wrt_text))
    raise GradError(t("err.no_output"))
