"""The engine behind ``%%grad``, usable without IPython.

One call, one direction::

    parse --wrt -> make fresh leaf tensors -> run the cell -> find the output
    -> backward (unless the cell did) -> GradResult

``grad("y = 3 * x ** 2", wrt="x=3")`` runs the code in a fresh namespace;
pass ``namespace=`` to run it in yours, or ``shell=`` (an IPython
``InteractiveShell``) to run it as a real cell, which is what the magic does.

Where each step lives: spec (the magic line), this module (leaves, torch's
global state, the order of the steps), runner (running the cell), backward
(the output and first derivatives), calculus / symbolic / plot / graph (the
optional parts, imported only when asked for), result (the report).
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from . import format as fmt
from .backward import Recorder, differentiate, names_assigned, parse
from .messages import t, using
from .result import GradResult
from .runner import CellError, PlainRunner, Rerun, ShellRunner
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


# ---------------------------------------------------------------------------
# torch's global state and the --wrt leaves
# ---------------------------------------------------------------------------
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
        is_array = hasattr(value, "__array__") or hasattr(value, "__array_interface__")
        if not isinstance(value, (numbers.Number, list, tuple)) and not is_array:
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
# the engine
# ---------------------------------------------------------------------------
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
    order: int = 1,
    hessian: bool = False,
    jacobian: bool = False,
    check: bool = False,
    symbolic: bool = False,
    expect: Any = None,
    times_input: bool = False,
    graph: Any = None,
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
    order
        also the derivatives of order 2..N (``result.orders``).
    hessian, jacobian
        the matrix of second partials (scalar inputs) / every d out[i] / d in[j]
        (``result.matrices``).
    check
        compare with central differences in float64 (``result.checks``).
    symbolic
        SymPy's derivative beside autograd's (``result.symbolic``).
    expect
        ``"38"`` or ``"u=43 v=20"`` (or a list of such items): raise
        :class:`GradError` when a grad differs; ``result.expect_line`` otherwise.
    times_input
        add a grad×input column (a simple input-sensitivity score).
    graph
        ``True``/``"simple"``: the backward graph with names, values and grads
        (``result.graph``); ``"full"`` adds what each node saved.

    Raises :class:`GradError` with a message meant for the user when the input
    cannot be used; exceptions from the code itself propagate (with ``shell=``
    they are shown as a traceback and reported as :class:`CellError`).
    """
    options = _Options(
        wrt=wrt, of=of, retain_grad=retain_grad, dtype=dtype, device=device, digits=digits,
        max_items=max_items, plot=plot or save is not None or plot_range is not None, plot_range=plot_range,
        save=save, order=order,
        hessian=hessian, jacobian=jacobian, check=check, symbolic=symbolic, expect=expect,
        times_input=times_input, graph="simple" if graph is True else graph or None,
    )  # fmt: skip
    with using(lang) as language:
        if not isinstance(order, int) or isinstance(order, bool) or not 1 <= order <= 10:
            raise GradError(t("calc.bad_order", order=order))
        if options.graph not in (None, "simple", "full"):
            raise GradError(t("graph.bad", value=graph))
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
    order: int = 1
    hessian: bool = False
    jacobian: bool = False
    check: bool = False
    symbolic: bool = False
    expect: Any = None
    times_input: bool = False
    graph: Any = None
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
    tree = parse(code)
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
            recorder = Recorder(opts.retain_grad)
            before = {name: id(value) for name, value in ns.items()}
            with recorder:
                last_value = runner.run(source)
            assigned = names_assigned(tree, ns, before)
            create = opts.order > 1 or opts.hessian
            keep = (
                create or opts.jacobian or opts.graph == "full"
            )  # Jacobians and saved values need the graph
            result, first = differentiate(
                ns, leaves, recorder, last_value, assigned, opts.of, opts.retain_grad, create, keep
            )
            result.digits, result.max_items, result.language = opts.digits, opts.max_items, opts.language
            result.times_input = opts.times_input
            _beyond(result, first, opts)
            if opts.check or opts.symbolic or opts.plot:
                rerun = Rerun.of(result, code, ns, last_value, assigned)
                _recompute(result, rerun, opts)
                if opts.plot:
                    _draw(result, rerun, window, opts.save)
            if opts.graph:
                _graph(result, ns, opts.graph == "full")
            if opts.expect is not None:
                _expect(result, opts.expect, ns)
    finally:
        for name, original in originals.items():
            if ns.get(name) is leaves.get(name):
                ns[name] = original
    return result


# ---------------------------------------------------------------------------
# the optional parts
# ---------------------------------------------------------------------------
def _beyond(result: GradResult, first: list[torch.Tensor | None], opts: _Options) -> None:
    """--order, --hessian and --jacobian, on the graph the cell built."""
    if not (opts.order > 1 or opts.hessian or opts.jacobian):
        return
    from . import calculus

    if result.backward_calls:
        flag = "--order" if opts.order > 1 else "--hessian" if opts.hessian else "--jacobian"
        raise GradError(t("calc.needs_graph", flag=flag))
    if opts.order > 1:
        result.orders = calculus.higher_orders(result.leaves, first, opts.order)
        if any(leaf.dim() for leaf in result.leaves.values()):
            result.notes.append(t("calc.order_vector"))
    if opts.hessian:
        out = f"sum({result.output_name})" if result.summed else result.output_name
        names = list(result.leaves)
        title = t("calc.hessian_title", out=out)
        result.matrices.append(
            calculus.Matrix("hessian", title, calculus.hessian(result.leaves, first), names, names)
        )
    if opts.jacobian:
        result.matrices.append(calculus.jacobian(result.output, result.output_name, result.leaves))
        result.notes = [
            n
            for n in result.notes
            if n != t("note.summed", out=result.output_name, count=result.output.numel())
        ]
        result.notes.append(t("calc.jacobian_note", out=result.output_name, inputs=", ".join(result.leaves)))


def _recompute(result: GradResult, rerun: Rerun | str, opts: _Options) -> None:
    """--check and --symbolic: re-run the cell in float64 / with SymPy symbols."""
    if isinstance(rerun, str):
        if opts.check or opts.symbolic:
            result.notes.append(rerun)
        return
    if opts.check:
        from . import calculus

        try:
            result.checks, notes, result.check_step = calculus.check(rerun, result)
            result.notes.extend(notes)
        except Exception as e:
            result.notes.append(t("check.cannot", error=f"{type(e).__name__}: {e}"[:200]))
    if opts.symbolic:
        from .symbolic import symbolic

        result.symbolic, notes = symbolic(rerun, result)
        result.notes.extend(notes)


def _graph(result: GradResult, ns: dict[str, Any], full: bool) -> None:
    from . import graph

    named = {n: v for n, v in ns.items() if isinstance(v, torch.Tensor) and not n.startswith("_")}
    named.update(result.leaves)
    names = {id(v): n for n, v in reversed(list(named.items()))}
    names[id(result.output)] = result.output_name
    grads: dict[int, torch.Tensor | None] = {id(result.leaves[n]): g for n, g in result.grads.items()}
    for tensor in [*named.values(), result.output]:
        if not tensor.is_leaf and tensor.retains_grad:
            grads[id(tensor)] = tensor.grad
    tensors = [*named.values(), result.output]
    result.graph = graph.build(result.output, result.output_name, names, tensors, grads, full, result.digits)


def _expect(result: GradResult, expect: Any, ns: dict[str, Any]) -> None:
    from . import calculus

    ok, lines = calculus.compare_expected(calculus.parse_expect(expect, list(result.leaves)), result, ns)
    if not ok:
        raise GradError(t("expect.failed", lines="; ".join(lines)))
    result.expect_line = t("expect.ok", lines="; ".join(lines))


def _draw(result: GradResult, rerun: Rerun | str, window, save) -> None:
    from . import plot

    evaluate = None
    if isinstance(rerun, str):
        result.notes.append(rerun)
    else:

        def evaluate(name: str, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            point = result.leaves[name]
            values = grid.to(point.dtype).to(point.device)
            function = torch.func.grad_and_value(lambda v: rerun.scalar({name: v}))
            slopes, values = torch.func.vmap(function)(values)
            return values.detach().cpu(), slopes.detach().cpu()

    figure, curves, notes = plot.make_figure(result, evaluate, window, result.language)
    result.figure, result.curves = figure, curves
    result.notes.extend(notes)
    if figure is not None and save is not None:
        plot.save(figure, save)
