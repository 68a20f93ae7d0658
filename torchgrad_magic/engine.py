"""The engine behind ``%%grad``, usable without IPython: an orchestration of three stages.

    the line checked (a refused line does not run the cell)
    -> capture: make the --wrt leaves, run the cell once, observed        (capture/)
    -> derive: first derivatives, then what the line asked for besides   (derive/)
    -> render: one GradResult, in the language asked for                  (render/)

``grad("y = 3 * x ** 2", wrt="x=3")`` runs the code in a fresh namespace;
pass ``namespace=`` to run it in yours, or ``shell=`` (an IPython
``InteractiveShell``) to run it as a real cell, which is what the magic does.
The user's code runs exactly once: extras evaluate the record, never the cell.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import numbers
from collections.abc import Iterator
from typing import Any

import torch

from . import format as fmt
from .capture.observe import Observer, namespace_settled
from .capture.paths import parse_path, value_at
from .capture.runner import CellError, PlainRunner, ShellRunner
from .capture.spec import GradError, WrtSpec, check_name, parse_wrt
from .capture.syntax import loop_targets, nodes, parse
from .derive.backward import checked_against_code, dense, first_derivatives, names_assigned
from .derive.names import differentiated_texts
from .derive.scaler import with_scaling_note
from .messages import note, t, using
from .options import FIELDS, GradOptions
from .render.result import GradResult

__all__ = ["CellError", "GradError", "GradOptions", "GradResult", "grad"]
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
    """The default dtype while inside when asked (``--dtype``), put back on the way
    out (also after errors and KeyboardInterrupt) unless the cell set it itself.
    Grad mode and anomaly mode are the user's: the cell runs as it would without
    %%grad, and what it sets stays set."""
    default_dtype = torch.get_default_dtype()
    try:
        if dtype is not None:
            torch.set_default_dtype(dtype)
        yield
    finally:
        if dtype is not None and torch.get_default_dtype() == dtype:
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
    if dev.type not in ("cpu", "cuda", "meta"):
        backend = getattr(torch, dev.type, None)
        available = getattr(backend, "is_available", None)
        try:
            ok = bool(available()) if callable(available) else False
        except Exception:
            ok = False
        if not ok:
            raise GradError(t("err.no_device", value=device, kind=dev.type))
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
        try:
            leaf = leaf.to(device)
        except (RuntimeError, AssertionError) as e:
            raise GradError(t("err.device_failed", value=device, error=str(e).split("\n")[0])) from None
    return leaf.requires_grad_(True)


def _make_leaves(
    specs: list[WrtSpec], namespace: dict[str, Any], dtype: torch.dtype | None, device: torch.device | None
) -> dict[str, torch.Tensor]:
    """The --wrt leaves: fresh ones (ours), or a model's own parameters, tracked in place
    (``--wrt net.0.weight``, ``--wrt W=net[0].weight``): a copy is a tensor the model never uses."""
    made: dict[str, torch.Tensor] = {}
    for spec in specs:
        if spec.dotted:
            made[spec.name] = _parameter(spec, namespace)
            continue
        value = _evaluate(spec, namespace, made)
        made[spec.name] = value if _is_parameter(value) else _to_leaf(spec, value, dtype, device)
    return made


def _is_parameter(value: Any) -> bool:
    return isinstance(value, torch.nn.Parameter) and value.is_leaf and value.requires_grad


def _parameter(spec: WrtSpec, namespace: dict[str, Any]) -> torch.Tensor:
    """``net.0.weight``: the parameter itself, found as the model names it; ``params[0]``: the
    tensor at that path (data only: a list, a dict, an object's attribute)."""
    if "[" in spec.name:
        parsed = parse_path(spec.name)
        found = value_at(namespace, spec.name)
        if parsed is not None and parsed[0] not in namespace:
            raise GradError(t("err.wrt_undefined", name=parsed[0]))
        if not isinstance(found, torch.Tensor) or not found.is_leaf or not found.requires_grad:
            raise GradError(t("err.wrt_not_param", name=spec.name))
        return found
    head, _, rest = spec.name.partition(".")
    if head not in namespace:
        raise GradError(t("err.wrt_undefined", name=head))
    value = namespace[head]
    found = None
    if isinstance(value, torch.nn.Module):
        found = dict(value.named_parameters(remove_duplicate=False)).get(rest)
    if found is None:  # attributes and indices of other objects
        found = value
        for part in rest.split("."):
            try:
                found = found[int(part)] if part.isdigit() else getattr(found, part)
            except (AttributeError, IndexError, KeyError, TypeError):
                raise GradError(t("err.wrt_no_param", name=spec.name, head=head, rest=rest)) from None
    if not isinstance(found, torch.Tensor) or not found.is_leaf or not found.requires_grad:
        raise GradError(t("err.wrt_not_param", name=spec.name))
    return found


# ---------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------
def grad(
    source: str,
    wrt: Any = None,
    *,
    options: GradOptions | None = None,
    namespace: dict[str, Any] | None = None,
    shell: Any = None,
    **fields: Any,
) -> GradResult:
    """Run *source* once, differentiate its output and return a :class:`GradResult`.

    The options are a :class:`GradOptions` (what the magic passes) or its fields
    as keyword arguments (a keyword wins over ``options``):

    wrt
        ``"x=3"``, ``"u=3 v=4"``, ``["x=torch.linspace(-20, 20, 20)"]`` or
        ``{"x": 3.0}``: each name becomes a fresh leaf tensor with
        ``requires_grad=True`` (a bare ``"x"`` copies the existing ``x``).
        Without it, the named leaf tensors the output depends on are used
        (model parameters as ``net.0.weight``).
    of
        the name of the output; by default the tensor the cell called
        ``backward()`` on, else its last expression, else the last assigned
        tensor that depends on the leaves. A non-scalar output is summed.
    retain_grad
        also report the grads of the cell's named intermediate tensors.
    dtype, device
        for the ``wrt`` leaves (Python numbers become the default float dtype).
    digits, max_items, lang
        significant digits, values shown of a long tensor, ``"en"``/``"zh"``.
    plot, plot_range, save
        draw the function and its derivative (``result.figure``).
    order, hessian, jacobian, check, symbolic
        higher derivatives, matrices, central differences, SymPy: all evaluated
        on the computation recorded during the one run.
    expect
        ``"38"`` or ``"u=43 v=20"``: raise :class:`GradError` when a grad differs.
    times_input
        add a grad×input column.
    graph
        ``"simple"`` (or True) / ``"full"``: the backward graph (``result.graph``).
    quiz
        also ``result.quiz``: the report as questions with hidden answers (what ``--quiz`` shows).

    The cell's grads are the ones its own ``backward()``/``autograd.grad()`` computed,
    caught at that moment; without such a call, %%grad computes them without writing
    the user's ``.grad`` or freeing the graph. A cell with nothing to differentiate
    gets a note. Raises :class:`GradError` for options that cannot work; exceptions
    from the code itself propagate (with ``shell=`` they are shown as a traceback
    and reported as :class:`CellError`).
    """
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"grad() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    opts = (options or GradOptions()).replace(**fields)
    if wrt is not None:
        opts = opts.replace(wrt=wrt)
    with using(opts.lang) as language:
        opts = opts.validated()
        result, _ = run(source, opts, namespace=namespace, shell=shell, language=language)
        return result


def run(
    source: str,
    opts: GradOptions,
    *,
    namespace: dict[str, Any] | None = None,
    shell: Any = None,
    language: str = "en",
) -> tuple[GradResult, Any]:
    """The engine: *opts* must be validated. Returns the result and the value of the
    cell's last expression (what a plain cell shows as ``Out[n]``).

    capture (run the cell once, observed) -> derive (the report's facts) -> render (one result)."""
    specs = parse_wrt(opts.wrt)
    window = _refused(specs, opts, namespace, shell)  # (a refused line must not run the cell)
    runner = ShellRunner(shell) if shell is not None else PlainRunner({} if namespace is None else namespace)
    cell = _Cell(runner, source)
    try:
        _capture(cell, specs, opts)
        report = _derive(cell, opts, window, language)
        result = GradResult.assemble(
            report.first, report.more, report.graph, opts, language, report.steps, report.model
        )
        if opts.quiz and result.output is not None:
            from .render import quiz

            kind = report.first.call.kind if report.first.call else None
            result = result.replace(quiz=quiz.build(result, cell.tree, kind))
        if opts.expect is not None:
            result = _expect(result, opts.expect, cell.ns, quiz=opts.quiz)
    finally:
        cell.put_back()
    return result, cell.last_value


def _refused(specs: list[WrtSpec], opts: GradOptions, namespace: Any, shell: Any) -> Any:
    """What the line asks that cannot work, raised before the cell runs; --plot's window."""
    if opts.of is not None:
        check_name(opts.of, f"--of {opts.of}")
    if opts.expect is not None:
        _check_expect(
            opts.expect, [s.name for s in specs], _known_names(namespace, shell) | {s.name for s in specs}
        )
    if opts.explore not in (None, True, False, ""):  # --explore x=-2:2
        from .render.explore import parse_ranges

        parse_ranges(opts.explore, [s.name for s in specs])
    _dtype(opts.dtype)
    _device(opts.device)
    if not opts.plot:
        return None
    from .render import plot

    window = opts.plot_range if isinstance(opts.plot_range, tuple) else plot.parse_range(opts.plot_range)
    plot.check_save_path(opts.save)
    return window


class _Cell:
    """The cell and its one run, as capture leaves it for derive: the namespace, the --wrt leaves
    (and the variables they stand in for, put back afterwards), the observer and what it kept."""

    def __init__(self, runner: Any, source: str):
        self.runner, self.source, self.ns = runner, source, runner.namespace
        self.tree = parse(source)  # (plain Python, as most cells are: IPython changes nothing in it)
        self.code = source if self.tree is not None else runner.python_source(source)
        if self.tree is None:
            self.tree = parse(self.code)
        self.leaves: dict[str, torch.Tensor] = {}
        self.originals: dict[str, Any] = {}  # the variables --wrt x (a copy) stands in for
        self.original_grads: dict[str, tuple[int, int]] = {}  # their .grad before the cell (_grad_state)
        self.owned: set[int] = set()  # ids of the --wrt leaves %%grad made: they carry their grads
        self.observer: Any = None
        self.recorder: Any = None
        self.tracker: Any = None
        self.before: dict[str, int] | None = None  # id of each variable, where the tree may hide some
        self.last_value: Any = None

    def put_back(self) -> None:
        for name, original in self.originals.items():
            if self.ns.get(name) is self.leaves.get(name):
                self.ns[name] = original


def _capture(cell: _Cell, specs: list[WrtSpec], opts: GradOptions) -> None:
    """Make the --wrt leaves, then run the cell once, observed (recorded, its modules' calls
    tracked, where what was asked needs it)."""
    ns, tree = cell.ns, cell.tree
    ns.setdefault("torch", torch)
    torch_dtype = _dtype(opts.dtype)
    with _torch_state(torch_dtype):
        cell.leaves = leaves = _make_leaves(specs, ns, torch_dtype, _device(opts.device))
        dotted = {s.name for s in specs if s.dotted}
        cell.originals = {
            s.name: ns[s.name] for s in specs if s.expr is None and not s.has_value and not s.dotted
        }
        cell.original_grads = {n: _grad_state(t) for n, t in cell.originals.items()}
        cell.owned = {id(leaf) for n, leaf in leaves.items() if not _is_parameter(leaf) and n not in dotted}
        ns.update((n, leaf) for n, leaf in leaves.items() if n not in dotted)
        if opts.needs_record:
            from .capture.record import NodeCalls, Recorder

            cell.recorder = Recorder() if opts.needs_replay else NodeCalls()  # (--steps alone: its notes)
            if isinstance(cell.runner, ShellRunner):  # a cell with await runs its ops in a helper thread
                cell.runner.thread_context = lambda: cell.recorder
        cell.observer = Observer(ns, leaves, opts.retain_grad, cell.recorder, opts.steps)
        cell.observer.written = _written_names(tree)
        cell.observer.hooks_added = _adds_hooks(tree)  # (and set when the cell calls one: watched)
        cell.before = {name: id(value) for name, value in ns.items()} if _hides_assignments(tree) else None
        if opts.graph is not None or opts.steps:  # which module made which node: a model's layers
            from .capture.modules import ModuleTracker

            cell.tracker = ModuleTracker()
        with (
            cell.observer,
            cell.recorder if cell.recorder is not None else contextlib.nullcontext(),
            cell.tracker if cell.tracker is not None else contextlib.nullcontext(),
        ):
            cell.last_value = cell.runner.run(cell.source, cell.tree)


@dataclasses.dataclass(frozen=True)
class _Derived:
    """The report's facts: first derivatives, then what the line asked for besides."""

    first: Any
    more: Any
    graph: Any = None
    steps: Any = None
    model: Any = None


def _derive(cell: _Cell, opts: GradOptions, window: Any, language: str) -> _Derived:
    """The report's facts, from what the run kept (the namespace holds still meanwhile: one scan of
    it serves every stage). Interrupted here, the cell has run to its end: only the report is lost."""
    settled = namespace_settled(cell.ns)
    settled.__enter__()
    try:
        first = _first(cell, opts)
        owners = None  # which layer made which node: one walk, for --steps and --graph
        if cell.tracker is not None and cell.tracker.calls:
            from .derive import layers

            owners = layers.owner_of_nodes(cell.tracker.calls, layers.module_names(cell.ns))
        steps = _steps(first, cell.ns, cell.owned, cell.recorder, opts, owners) if opts.steps else None
        model = _model(first, cell.ns, opts)
        more = _extras(first, cell, opts, window, model is not None)
        if model is not None:
            more = _flow(model, more, opts)
        graph = None
        if opts.graph is not None and first.output is not None:
            graph = _graph(first, cell.ns, opts.graph, opts.digits, steps, owners, language)
        if graph is not None and more.explorer is not None:  # --explore draws the graph too
            more = dataclasses.replace(more, explorer=dataclasses.replace(more.explorer, graph=graph))
        return _Derived(first, more, graph, steps, model)
    except KeyboardInterrupt:
        raise GradError(t("err.report_interrupted")) from None
    finally:
        settled.__exit__(None, None, None)
        if cell.tracker is not None:
            cell.tracker.clear()


def _first(cell: _Cell, opts: GradOptions) -> Any:
    """The first derivatives of the cell's output, with the notes only the engine can add."""
    ns, tree, observer = cell.ns, cell.tree, cell.observer
    assigned = names_assigned(tree, ns, cell.before)
    first = first_derivatives(
        ns, cell.leaves, observer.result(tree), cell.last_value, assigned, opts.of, opts.retain_grad,
        opts.steps, cell.owned, differentiated_texts(tree, cell.code), observer.written,
    )  # fmt: skip
    first = with_scaling_note(first, ns, observer.written)
    first = checked_against_code(first, tree)
    if tree is not None and not tree.body:  # only comments and blank lines: it ran, one note
        return dataclasses.replace(first, notes=(note("note.cell_empty"),), later=())
    if cell.originals and observer.count:  # (the cell's backward() filled the copy's .grad)
        reached = [n for n, t in cell.originals.items() if _grad_state(t) != cell.original_grads.get(n)]
        copied = ", ".join(n for n in cell.originals if n not in reached)
        said = [note("note.wrt_copy", names=copied)] if copied else []
        said += [note("note.wrt_original_reached", name=n, grad=fmt.values(cell.originals[n].grad))
                 for n in reached]  # fmt: skip
        return dataclasses.replace(first, notes=(*first.notes, *said))
    return first


def _grad_state(tensor: Any) -> tuple[int, int]:
    """Which tensor ``.grad`` holds and its version (a backward() through it changes one of them)."""
    held = getattr(tensor, "grad", None) if getattr(tensor, "is_leaf", False) else None
    return (id(held), held._version) if held is not None else (0, -1)


def _extras(first: Any, cell: _Cell, opts: GradOptions, window: Any, model: bool) -> Any:
    """--check, --order, --plot, --explore, ... evaluated on the record (a *model*'s --plot is its
    gradient flow, drawn apart), then --plot's and --explore's figures drawn from the curves."""
    from .derive.extras import extras
    from .render.figures import draw

    more = extras(
        first, cell.recorder, cell.observer, opts.replace(plot=False) if model else opts, window, cell.ns
    )
    return draw(more, first, opts)


def _model(first: Any, ns: dict[str, Any], opts: GradOptions) -> Any:
    """The parameters' summary when the tracked leaves include a model's parameters."""
    if first.output is None or not first.leaves or first.withheld:  # (withheld: no grads to sum up)
        return None
    from .derive.model import model_report

    return model_report(first.leaves, first.values, first.grads, ns, opts.digits, first.lost)


def _flow(model: Any, more: Any, opts: GradOptions) -> Any:
    """With --plot, the model's gradient-flow picture added to the extras (the model's notes are
    the report's, found when first read)."""
    import dataclasses

    if not (opts.plot and model.modules):
        return more
    from .render import plot

    notes = list(more.notes)  # the picture may add one (no font for the language's glyphs)
    figure = plot.flow_figure(model.layers(), opts.lang, notes)
    if opts.save is not None:
        notes.append(plot.save(figure, opts.save))  # where it was written
    return dataclasses.replace(more, notes=tuple(notes), figure=figure)


def _steps(
    first: Any, ns: dict[str, Any], owned: set[int], recorder: Any, opts: GradOptions, owners: Any = None
) -> Any:
    """``--steps``: the traced backward pass as steps (None when no pass was traced)."""
    from .derive import steps

    tracer = first.trace
    # (--steps follows one output from dy/dy = 1: a weighted call is left out, a note says so)
    if first.output is None or tracer is None or not tracer.raws or first.weighted:
        return None
    output = tracer.outputs[0]
    if output is first.output or output is first.target:
        name = first.written or first.output_name
    else:
        name = f"sum({first.output_name})"
    named: dict[str, Any] = dict(first.leaves)
    named.update((n, v) for n, v in ns.items() if isinstance(v, torch.Tensor) and not n.startswith("_"))
    named.setdefault(first.output_name, first.output)
    params = owners.params if owners else {}
    for node in tracer.nodes if params else ():  # (--wrt net.0.weight: the other parameters' names)
        if id(node) in params:
            named.setdefault(params[id(node)], node.variable)
    if first.call is not None:  # the cell's own pass: backward() writes every leaf's .grad, grad() none
        to_grad = set(first.call.leaves) if first.call.kind == "backward" else set()
    else:  # ours: only the --wrt leaves (ours) carry their grads
        to_grad = {n for n, leaf in first.leaves.items() if id(leaf) in owned}
    built = steps.build(
        tracer, output, name, named, set(ns), recorder, opts.digits, opts.max_items, to_grad, owners
    )
    hooked = []  # a hook (on a tensor or a parameter) changed a gradient between two nodes
    for leaf in built.leaves:
        grad = first.grads.get(leaf.name)
        total = dense(leaf.total)
        if not isinstance(grad, torch.Tensor) or total is None or grad.shape != total.shape:
            continue
        if not torch.allclose(grad.to(total.dtype), total, rtol=1e-4, atol=1e-6, equal_nan=True):
            hooked.append(leaf.name)
    return dataclasses.replace(built, hooked=tuple(hooked)) if hooked else built


def _graph(
    first: Any,
    ns: dict[str, Any],
    kind: Any,
    digits: int,
    steps: Any = None,
    owners: Any = None,
    language: str | None = None,
) -> Any:
    """``--graph``: built, a model's modules folded, repeated ops folded (not with ``unfold`` or
    ``full``), in *language* (by default the one in use: run() runs inside ``using(language)``)."""
    from .derive import graph
    from .messages import resolve

    language = resolve(language)

    named = {n: v for n, v in ns.items() if isinstance(v, torch.Tensor) and not n.startswith("_")}
    named.update(first.leaves)
    names = {id(v): n for n, v in reversed(list(named.items()))}
    from .derive.model import parameters_in

    for key, entries in parameters_in(ns).items():  # a model's parameters, as the model names them
        names.setdefault(key, entries[0][0])
    names.update((id(leaf), n) for n, leaf in first.leaves.items())  # (the table's names: params[0])
    names[id(first.output)] = first.output_name
    grads: dict[int, torch.Tensor | None] = {id(first.leaves[n]): g for n, g in first.grads.items()}
    for row in first.rows:
        tensor = named.get(row.name)
        if row.role == "intermediate" and tensor is not None:
            grads[id(tensor)] = row.grad
    if any(row.role == "intermediate" for row in first.rows) or first.output.retains_grad:
        grads[id(first.output)] = torch.ones_like(first.output)  # d out / d out
    tensors = [*named.values(), first.output]
    flow, made_up = None, None
    if steps is not None and first.trace is not None:  # the numbers and the names --steps shows
        from .derive.steps import graph_flow

        flow = graph_flow(first.trace, digits)
        made_up = graph.names_from_steps(first.trace.raws, steps)
    # (*owners*, made before this build, hold the nodes they name: their ids stay valid)
    out, full = first.output, kind == "full"
    built = graph.build(out, first.output_name, names, tensors, grads, full, digits, flow, made_up, language)
    for node in built.nodes:  # leaves as they were when the grads were computed, as in the table
        if node.kind == "leaf" and node.name in first.values and node.data is not None:
            node.data = fmt.values(first.values[node.name], digits)
    if owners:
        from .derive import layers

        depth = None if kind in ("simple", "unfold") else kind
        built = layers.fold_graph(built, owners, depth, repeats=kind != "unfold")
    if kind not in ("full", "unfold"):
        built = graph.fold_repeats(built)
    return dataclasses.replace(built, language=language, output_name=first.output_name)


def _check_expect(expect: Any, inputs: list[str], known: Any = ()) -> None:
    """``--expect`` as far as it can be known before the cell runs: each value is an expression
    whose names are *known* (the namespace, builtins, torch), and with ``--wrt`` each name is one
    of the inputs."""
    from .capture.spec import split_line
    from .derive import calculus

    if inputs:
        values = [f"{n}={v}" for n, v in calculus.parse_expect(expect, inputs).items()]
    else:  # the leaves are known after the run: only the values can be checked now
        items = [expect] if isinstance(expect, str) else list(expect)
        values = [token for item in items for token in split_line(item)]
        if len(values) > 1 and any("=" not in token for token in values):  # 18 19: never one input's
            raise GradError(t("expect.bad", value=" ".join(values)))
    for token in values:
        expr = token.partition("=")[2] or token
        try:
            tree = ast.parse(expr, "<--expect>", "eval")
        except SyntaxError as e:
            raise GradError(t("expect.bad", value=f"{token} (SyntaxError: {e.msg})")) from None
        unknown = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in known]
        if unknown:  # (x=abc: a name nothing defines yet; the cell has not run)
            raise GradError(t("expect.bad", value=f"{token} (NameError: name {unknown[0]!r} is not defined)"))


_HIDING = frozenset({"get_ipython", "exec", "eval", "globals", "locals", "vars", "setattr", "__import__"})


@functools.lru_cache(maxsize=32)  # (per tree: one per cell text, see syntax.parse)
def _hides_assignments(tree: ast.Module | None) -> bool:
    """Whether the cell may assign names its syntax tree does not show (``%time y = ...`` becomes
    ``get_ipython().run_line_magic(...)``; ``exec``, ``globals()[...]``, ``from m import *``): then
    what changed is found by comparing the namespace before and after (its size costs only then)."""
    if tree is None:
        return True
    for node in nodes(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _HIDING:
            return True
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            return True
    return False


_HOOK_CALLS = frozenset(
    {"register_hook", "register_prehook", "retain_grad", "queue_callback", "register_multi_grad_hook"}
)


@functools.lru_cache(maxsize=32)  # (per tree: one per cell text, see syntax.parse)
def _adds_hooks(tree: ast.Module | None) -> bool:
    """Whether the cell's code names a way to hook into the graph (``y.grad_fn.register_hook``: a
    node's method is not a Python one that could be watched while the cell runs)."""
    return tree is None or any(isinstance(n, ast.Attribute) and n.attr in _HOOK_CALLS for n in nodes(tree))


@functools.lru_cache(maxsize=32)  # (per tree: one per cell text, see syntax.parse)
def _written_names(tree: ast.Module | None) -> tuple[str, ...]:
    """Every variable name the cell's code uses, and every path (``m.w``, ``params[0]``), in order
    (where its leaves are looked for first, and named as the cell wrote them)."""
    if tree is None:
        return ()
    from .capture.paths import paths_in

    found = [(n.lineno, n.col_offset, n.id) for n in nodes(tree) if isinstance(n, ast.Name)]
    found = sorted(found + paths_in(tree))  # (a path after the name it starts with: m, then m.w)
    loops = loop_targets(tree)  # (last: for p in params leaves p at whichever item came last)
    names = dict.fromkeys(name for _, _, name in found)  # (in the order they are written)
    return (*(n for n in names if n not in loops), *(n for n in names if n in loops))


def _known_names(namespace: dict[str, Any] | None, shell: Any) -> set[str]:
    """The names an --expect value may use before the cell runs."""
    import builtins

    ns = shell.user_ns if shell is not None else (namespace or {})
    return {*ns, *dir(builtins), "torch", "math"}


def _expect(result: GradResult, expect: Any, ns: dict[str, Any], quiz: bool = False) -> GradResult:
    """Grade the prediction: as expected, one line; not as expected, an error (with --quiz, the
    line above the quiz: the learner's guess is graded, the worksheet stays). What only the run
    could tell (a name that is not one of its inputs) is a note: the cell has run."""
    from .derive import calculus

    try:
        expected = calculus.parse_expect(expect, list(result.leaves))
    except GradError as e:
        return result.replace(found=(*result.found, note("expect.not_graded", reason=str(e))))
    ok, lines = calculus.compare_expected(expected, result, ns)
    if not ok and not quiz:
        raise GradError(t("expect.failed", lines="; ".join(lines)))
    return result.replace(expect_line=t("expect.ok" if ok else "expect.failed", lines="; ".join(lines)))
