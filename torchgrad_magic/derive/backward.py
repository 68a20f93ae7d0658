"""From the observed run to first derivatives: which tensor is the output, which
leaves it depends on, and their gradients.

When the cell called ``backward()``/``torch.autograd.grad()`` itself, the grads
are the ones :mod:`.observe` caught at that moment. Otherwise they are
computed here with ``torch.autograd.grad(..., retain_graph=True)``: the graph
stays usable for the next cell, and no ``.grad`` of the user's tensors is
written (only the leaves that ``--wrt`` made, which are ours, carry theirs).

Nothing here raises for a cell that has nothing to differentiate: it gets a note.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from .. import format as fmt
from ..capture.hints import hint_for
from ..capture.internals import (
    accumulate_grad_class,
    earliest_sequence_number,
    has_unpack_hook,
    hook_dict,
    nodes_behind,
    sequence_number,
)
from ..capture.observe import (
    Call,
    Observation,
    TensorNames,
    graph_functions,
    graph_leaves,
    kept_grad,
    leaves_in,
)
from ..capture.paths import is_tensor, value_at
from ..capture.syntax import detached_names, no_grad_names
from ..messages import Note, note, t
from .names import Reduced, Written, named_rows, read_into, reduction_of
from .own_pass import own_grads
from .rows import TensorRow


@dataclass(frozen=True)
class First:
    """First derivatives of the output, and what the report says about them."""

    output: torch.Tensor | None
    output_name: str | None
    leaves: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor]  # each leaf's value when the grads were computed
    grads: dict[str, torch.Tensor | None]
    rows: tuple[TensorRow, ...]
    notes: tuple[Note, ...]
    summed: bool = False
    call: Call | None = None  # the cell's backward()/grad() call shown, if any
    backward_calls: int = 0
    trace: Any = None  # steps.Tracer of the pass shown (--steps)
    # notes that need a pass over every element (is a leaf's value finite?): found when the report
    # is first read, not on the cell's path (see GradResult.notes)
    later: tuple[Callable[[], list[Note]], ...] = ()
    # what the grads are the grads of when that is not the output itself: "2·y", "v·y", "y1 + y2"
    differentiated: str | None = None
    others: tuple[tuple[str, torch.Tensor], ...] = ()  # the call's other outputs (several at once)
    lost: tuple[str, ...] = ()  # leaves whose big grad the cell changed in place after the call
    # the cell reduced a named tensor itself (Y.sum().backward()): output is Y, written "Y.sum()",
    # target the reduced tensor (what was differentiated)
    written: str | None = None
    target: torch.Tensor | None = None
    withheld: bool = False  # the grads would run the user's own backward code: not computed

    @property
    def weighted(self) -> bool:
        """Whether the call shown differentiated several outputs or weighted ones (y1 + 2·y2, 2·y)."""
        return bool(self.others) or (self.call is not None and self.call.gradient_given)


# ---------------------------------------------------------------------------
# names the cell assigned
# ---------------------------------------------------------------------------
def assigned_names(tree: ast.AST) -> list[str]:
    """Names the cell stores to, ordered by their last assignment (nested
    function, class, lambda and comprehension scopes are skipped)."""
    return list(_assigned(tree))


@functools.lru_cache(maxsize=32)  # (per tree: one per cell text, see capture/syntax.parse)
def _assigned(tree: ast.AST) -> tuple[str, ...]:
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
    return tuple(names)


def names_assigned(tree: ast.Module | None, ns: dict[str, Any], before: dict[str, int] | None) -> list[str]:
    """Names the cell assigned, in order. Assignments hidden from the syntax
    tree (``%time y = ...``) are found by what changed in the namespace since *before* (None: the
    tree hides none) and come first, since their position is unknown."""
    seen = assigned_names(tree) if tree is not None else []
    if before is None:
        return [n for n in seen if n in ns]
    changed = [n for n, v in ns.items() if before.get(n) != id(v) and not n.startswith("_")]
    return [n for n in changed if n not in seen] + [n for n in seen if n in ns]


# ---------------------------------------------------------------------------
# first derivatives
# ---------------------------------------------------------------------------
def first_derivatives(
    ns: dict[str, Any],
    wrt: dict[str, torch.Tensor],
    observed: Observation,
    last_value: Any,
    assigned: list[str],
    of: str | None,
    retain_grad: bool,
    steps: bool = False,
    owned: set[int] | None = None,
    written: Written | None = None,
    read: tuple[str, ...] = (),
) -> First:
    """*owned*: ids of the --wrt leaves %%grad made (they carry their grads); default: all of *wrt*.
    *written*: what the cell differentiates, as it wrote it (:func:`names.differentiated_texts`).
    *read*: the other names the cell's code uses (where tensors are named first)."""
    written = written or Written()
    texts = written.texts
    owned = {id(leaf) for leaf in wrt.values()} if owned is None else owned
    loops = written.loops  # (for p in params: p names a tensor only where nothing steadier does)
    steady = tuple(n for n in assigned if n not in loops)
    names: Mapping[int, str] = TensorNames(
        ns, (*wrt, *steady), (*(n for n in read if n not in loops), *loops)
    )
    call = observed.primary
    reduced = None
    if call is not None and id(call.output) not in names:  # Y.sum().backward(): the output is Y
        reduced = reduction_of(call.output, ns, assigned, texts)
        if reduced is None and written.only_call and len(call.outputs) == 1:  # (Y * 2).sum(): as written
            names = {**names, id(call.output): written.only_call}
    shown = (call.output, reduced.tensor if reduced is not None else None) if call is not None else ()
    if call is not None and (of is None or any(ns.get(of) is tensor for tensor in shown)):
        if reduced is not None:
            names = {**names, id(call.output): reduced.written}
        first = _from_call(call, observed, ns, names, wrt, retain_grad)
        rows_of = [*steady, *_made_earlier(first.output, ns, read, observed)]
        return _with_helpers(_finish(first, ns, rows_of, reduced, retain_grad, call.intermediates), observed)
    walks: dict[int, dict] = {}
    found = _find_output(ns, names, last_value, assigned, of, wrt, walks)
    if isinstance(found, Note):
        first = First(None, None, dict(wrt), _values(wrt), dict.fromkeys(wrt), _rows(wrt, {}, {}), (found,))
        return _with_helpers(_finish(first, ns, assigned, None, retain_grad, {}), observed)
    reduced = None
    if found[1] is last_value and id(last_value) not in names:
        reduced = reduction_of(last_value, ns, assigned, texts)
        if reduced is not None:
            found = (reduced.written, last_value)
        elif written.last:  # (the last expression as the cell wrote it, not a made-up "out")
            found = (written.last, last_value)
    first = _computed(
        *found, ns, names, wrt, assigned, retain_grad, observed, steps, owned, walks.get(id(found[1]))
    )
    if of is not None:
        first = _of_notes(first, of, of in assigned, observed.call_count)
    grads = {r.name: r.grad for r in first.rows if r.role == "intermediate"}
    earlier = _made_earlier(first.output, ns, read, observed)
    first = _freed_earlier(first, earlier, observed.call_count)
    return _with_helpers(_finish(first, ns, [*steady, *earlier], reduced, retain_grad, grads), observed)


def _of_notes(first: First, of: str, assigned: bool, calls: int) -> First:
    """``--of``'s own notes: beside the cell's ``backward()`` on another output (*calls*), and where
    the cell did not make the tensor (not *assigned*: said, no other guess)."""
    if calls:
        first = _of_beside_the_calls(first, of)
    if not assigned:
        guesses = ("err.no_leaf", "err.no_path", "err.unnamed_leaf", "err.grad_off")
        kept = [n for n in first.notes if n.id not in guesses]
        first = dataclasses.replace(first, notes=(note("note.of_earlier", name=of), *kept))
    return first


def _of_beside_the_calls(first: First, of: str) -> First:
    """``--of Y`` where the cell's own ``backward()`` was on another output: its grads are in .grad
    (the cell put them there), the table's are dY/d…, computed by %%grad. One note says so, in
    place of "still holds ... from earlier code" and "the cell did not call backward()"."""
    said = [n for n in first.notes if n.id in ("note.stale", "note.not_stored")]
    if not said:
        return first
    held = [
        f"{n}.grad = {fmt.values(g.detach())}"
        for n, t in first.leaves.items()
        if (g := kept_grad(t)) is not None
    ]
    kept = [n for n in first.notes if n not in said]
    return dataclasses.replace(
        first, notes=(*kept, note("note.of_beside", out=of, held=", ".join(held[:4]) or "—"))
    )


def _freed_earlier(first: First, earlier: list[str], calls: int) -> First:
    """Our pass failed because a backward() freed the graph: an earlier cell's, behind a tensor it
    made (``k2 = h ** 2`` after ``k.backward()``), or one of this cell's own *calls* (``--of Y`` after
    ``torch.sum(Y).backward()``): say that, in the learner's names."""
    if not earlier and not calls:
        return first

    def said(n: Note) -> Note:
        if n.id != "err.backward_failed" or "a second time" not in str(n.fields.get("error")):
            return n
        if earlier:
            return note("err.freed_earlier", out=n.fields["out"], names=", ".join(earlier))
        return note("err.freed_by_cell", out=n.fields["out"])

    return dataclasses.replace(first, notes=tuple(map(said, first.notes)))


def _made_earlier(output: Any, ns: dict[str, Any], read: tuple[str, ...], observed: Observation) -> list[str]:
    """The tensors the cell reads that an earlier cell computed on the way to the leaves
    (``h = x * 3`` in the cell before ``k = h.sin() * x``): the output's grads flow through them,
    so they get rows as the cell's own intermediates do."""
    if not isinstance(output, torch.Tensor) or output.grad_fn is None or observed.first_node < 0:
        return []
    found = []
    nodes: set[int] | None = None
    for name in read:
        value = value_at(ns, name)  # (h, or a path: hs[0], m.h)
        if not is_tensor(value) or value.grad_fn is None or value is output:
            continue
        if sequence_number(value.grad_fn) >= observed.first_node:  # (made by this cell)
            continue
        nodes = graph_functions((output,), 100_000) if nodes is None else nodes
        if id(value.grad_fn) in nodes:
            found.append(name)
    return found


def _finish(
    first: First,
    ns: dict[str, Any],
    assigned: list[str],
    reduced: Reduced | None,
    retain_grad: bool,
    caught: dict[str, torch.Tensor | None],
) -> First:
    """The report's rows as the cell wrote them: an output the cell reduced itself is the tensor it
    reduced (``Y``, with ``Y.sum()`` as what was differentiated), and every other tensor the cell
    named gets a row. With --retain-grad the output's grad is d(out)/d(out), as PyTorch keeps it."""
    rows = [r for r in first.rows if r.role != "intermediate"]
    output, name = first.output, first.output_name
    if reduced is not None and output is reduced.result:
        output, name = reduced.tensor, reduced.name
        grad = caught.get(name)
        rows = [r for r in rows if r.name != reduced.written]
        if all(reduced.tensor is not leaf for leaf in first.leaves.values()):
            rows.append(TensorRow.of(name, "output", reduced.tensor, grad))
        first = dataclasses.replace(
            first, output=output, output_name=name, written=reduced.written, target=reduced.result,
            summed=reduced.kind == "sum" and reduced.tensor.numel() != 1,
        )  # fmt: skip
    elif (
        retain_grad and output is not None and (output.numel() == 1 or first.summed) and output.requires_grad
    ):
        rows = [
            dataclasses.replace(r, grad=torch.ones_like(output.detach()))
            if r.role == "output" and r.name == name and r.grad is None and not r.is_leaf
            else r
            for r in rows
        ]
    shown = {id(first.leaves[n]): n for n in first.leaves}
    shown.update((id(t), n) for n, t in first.others)
    if output is not None and name is not None:
        shown[id(output)] = name
    if any(_unshown_leaf(ns.get(n), shown) for n in assigned):  # (W = model[2].weight)
        shown.update(_parameter_names(ns, shown))
    ordered = [*assigned, *(r.name for r in first.rows if r.role == "intermediate")]
    extra = named_rows(ns, list(dict.fromkeys(ordered)), shown, caught if retain_grad else {})
    extra = [_as_its_original(row, first, rows) for row in extra]
    chosen = first.call is None or first.call.chosen  # (--wrt a, grad(y, [a]), backward(inputs=[a]))
    extra = _on_path(ns, extra, first.output, "not_asked" if chosen else "none_came")
    at = next((i for i, r in enumerate(rows) if r.role == "output"), len(rows))
    notes = first.notes
    hooked = _hooked(ns, [*first.leaves, *ordered], first) if not first.withheld else []
    if hooked:  # the grads shown went through the user's hooks: not the derivative itself
        grads = ", ".join(f"{n}: {fmt.values(g)}" for n, g in first.grads.items() if g is not None) or "—"
        kind = "note.hooks" if first.call is not None else "note.hooks_not_run"  # (our pass runs none)
        notes = (*notes, note(kind, names=", ".join(hooked), grads=grads, out=first.output_name))
    off_path = _off_path(ns, extra, first)
    if off_path is not None:
        notes = (*notes, off_path)
    complex_grads = [n for n, g in first.grads.items() if isinstance(g, torch.Tensor) and g.is_complex()]
    real_output = output is not None and not output.is_complex()  # (of a complex one: another convention)
    if complex_grads and real_output and not any(n.id == "note.complex_weight" for n in notes):
        notes = (*notes, note("note.complex_grad", names=", ".join(complex_grads), out=name or "y"))
    return dataclasses.replace(first, rows=(*rows[:at], *extra, *rows[at:]), notes=notes)


def _on_path(
    ns: dict[str, Any], rows: list[TensorRow], output: torch.Tensor | None, why: str
) -> list[TensorRow]:
    """*rows*, where a leaf of the cell's without a grad is on the output's way back, so "no path"
    would be false: *why* it has none ("not_asked": the call left it out, ``backward(inputs=[a])``,
    ``grad(y, [a])``, ``--wrt a``; "none_came": nothing reached it, a custom Function's backward
    returned None for it). The output's graph is walked only when there is such a row."""
    if output is None or output.grad_fn is None:
        return rows
    if not any(r.role == "leaf" and r.grad is None and r.requires_grad for r in rows):
        return rows
    behind = {id(leaf) for leaf in graph_leaves((output,), WALK_BUDGET) or ()}
    return [
        dataclasses.replace(r, on_path=why)
        if r.role == "leaf" and r.grad is None and id(value_at(ns, r.name)) in behind
        else r
        for r in rows
    ]


def _off_path(ns: dict[str, Any], rows: list[TensorRow], first: First) -> Note | None:
    """One note naming the cell's non-leaf tensors the output was not computed from (``z = x * 5``
    beside ``y = x * 2``; ``h`` assigned again after ``k = h ** 2``, so the ``h`` in the table is
    not the one ``k`` used): backward() from the output never reaches them. The output's graph is
    walked only when there is such a row (none in a loop over a model's parameters)."""
    output = first.output
    names = [row.name for row in rows if row.role == "intermediate"]
    if output is None or output.grad_fn is None or not names:
        return None
    nodes, cut = nodes_behind([output], 100_000)  # (held: each node's id stays its own)
    if cut:
        return None
    off = []
    for name in names:
        tensor = value_at(ns, name)
        if is_tensor(tensor) and tensor.grad_fn is not None and id(tensor.grad_fn) not in nodes:
            off.append(name)
    return note("note.off_path", out=first.output_name, names=", ".join(off)) if off else None


def _as_its_original(row: TensorRow, first: First, rows: list[TensorRow]) -> TensorRow:
    """An alias row (``b`` in ``a = b = t``, ``W = net[2].weight``) shows the grad its tensor's own
    row shows (the same tensor: the same derivative), not a "no path" of its own."""
    if row.role != "alias" or row.alias is None:
        return row
    grad = first.grads.get(row.alias)
    if grad is None:
        grad = next((r.grad for r in rows if r.name == row.alias), None)
    return dataclasses.replace(row, grad=grad) if grad is not None else row


def _hooked(ns: dict[str, Any], names: list[str], first: First) -> list[str]:
    """The named tensors with a hook from ``register_hook`` (``retain_grad()`` adds none) that the
    output's graph passes through (a leaf's hook changes what reaches its .grad)."""
    if first.output is None or first.output.grad_fn is None:
        return []
    found = []
    nodes: set[int] | None = None
    for name in dict.fromkeys(names):
        tensor = first.leaves.get(name, ns.get(name))
        if not isinstance(tensor, torch.Tensor) or not hook_dict(tensor):
            continue
        if name not in first.leaves:  # an intermediate: on the output's way back to the leaves?
            nodes = graph_functions((first.output,), 100_000) if nodes is None else nodes
            if id(tensor.grad_fn) not in nodes:
                continue
        found.append(name)
    return found


def _in_graph(leaves: dict[str, torch.Tensor], output: torch.Tensor) -> dict[str, torch.Tensor]:
    """The *leaves* in *output*'s graph (found by a walk: used where autograd is not asked)."""
    found = graph_leaves((output,), limit=100_000)
    if found is None:
        return dict(leaves)
    ids = {id(leaf) for leaf in found}
    return {n: leaf for n, leaf in leaves.items() if id(leaf) in ids}


def _unshown_leaf(value: Any, shown: dict[int, str]) -> bool:
    return (
        isinstance(value, torch.Tensor) and value.is_leaf and value.requires_grad and id(value) not in shown
    )


def _parameter_names(ns: dict[str, Any], shown: dict[int, str]) -> dict[int, str]:
    """A model's parameters as the model names them (``model.2.weight``), for alias rows."""
    from .model import parameters_in

    return {key: entries[0][0] for key, entries in parameters_in(ns).items() if key not in shown}


def _with_helpers(first: First, observed: Observation) -> First:
    """jacobian(), gradcheck(): their passes are not the cell's calls: a note names them."""
    if not observed.helpers:
        return first
    helpers = ", ".join(f"{name} ({count})" for name, count in observed.helpers)
    # a helper's result has no graph: "create the input with requires_grad=True" would mislead
    # (and its pass freed the graph: our own pass failing there is no news)
    kept = [
        n
        for n in first.notes
        if n.id != "err.backward_failed" and (first.output is not None or n.id != "err.no_leaf")
    ]
    return dataclasses.replace(first, notes=(*kept, note("note.helpers", helpers=helpers)))


def _values(leaves: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: leaf.detach() for name, leaf in leaves.items()}


def _rows(
    leaves: dict[str, torch.Tensor], values: dict, grads: dict, role: str = "input"
) -> tuple[TensorRow, ...]:
    return tuple(TensorRow.of(n, role, leaf, grads.get(n), values.get(n)) for n, leaf in leaves.items())


def _from_call(
    call: Call,
    observed: Observation,
    ns: dict[str, Any],
    names: Mapping[int, str],
    wrt: dict[str, torch.Tensor],
    retain_grad: bool,
) -> First:
    """The grads the cell's own backward()/grad() call computed, at that moment."""
    output = call.output
    out_name = names.get(id(output)) or _fresh("out", ns)
    others = tuple(
        (names.get(id(o)) or _fresh(f"out{k}", ns), o) for k, o in enumerate(call.outputs[1:], start=2)
    )
    differentiated = _differentiated(call, (out_name, *(n for n, _ in others)), names, ns)
    if wrt:
        caught = {n: call.leaves.get(n) for n in wrt}
        leaves = dict(wrt)
    else:  # in the order the names come (the cell's own first, then the namespace's, a model's)
        order = {name: i for i, name in enumerate(names.values())}
        caught = dict(sorted(call.leaves.items(), key=lambda kv: order.get(kv[0], len(order))))
        leaves = {n: c.tensor for n, c in caught.items()}
    grads = {n: (dense(c.grad) if c is not None else None) for n, c in caught.items()}
    values = {n: (c.value if c is not None else leaves[n].detach()) for n, c in caught.items()}
    notes = _call_notes(call, observed, (out_name, *(n for n, _ in others)), differentiated, leaves)
    notes = _merge_accumulated(notes, _accumulation_notes(caught, call), caught)
    if call.index == observed.call_count and not observed.higher:  # (a later call may have filled .grad)
        notes += _returned_notes(caught, call)
    if call.unnamed and not wrt:
        notes.append(note("note.unnamed_leaves", count=call.unnamed, out=out_name))
    notes = _merge_after(notes, _changed_after(caught, call))
    lost = [n for n, c in caught.items() if c is not None and not c.kept]
    if lost:  # (only their grads changed: clip_grad_norm_, .grad.zero_(); a model's report says it too)
        moved = any(not caught[n].value_kept for n in lost)
        notes.append(
            note("note.not_kept" if moved else "note.grad_not_kept", names=", ".join(lost), index=call.index)
        )
    notes += _higher_order_notes(observed)
    rows = _call_rows(call, caught, leaves, values, grads, lost, "input" if wrt else "leaf")
    if retain_grad:
        for name, grad in call.intermediates.items():
            tensor = ns.get(name)
            if isinstance(tensor, torch.Tensor):
                rows.append(TensorRow.of(name, "intermediate", tensor, grad))
    rows += _output_rows([(out_name, output), *others], leaves)
    notes += _common_notes(out_name, leaves, values, grads, observed, rows, ns)
    return First(
        output, out_name, leaves, values, grads, tuple(rows), tuple(notes), False, call, observed.call_count,
        call.trace, (_non_finite(values),), differentiated, others,
        tuple(n for n in lost if not _grad_kept(caught[n])),
    )  # fmt: skip


def _call_notes(
    call: Call, observed: Observation, outputs: tuple[str, ...], differentiated: str | None, leaves: dict
) -> list[Note]:
    """What the call was: one of several, with a pass inside it, of several outputs, weighted."""
    notes: list[Note] = []
    out_name, output = outputs[0], call.output
    what = "backward()" if call.kind == "backward" else "torch.autograd.grad()"
    if observed.call_count > 1:  # (one call: the table is that call's, nothing to add)
        kinds = {c.kind for c in observed.calls}  # (grad() then backward(): both named)
        every = what if len(kinds) == 1 else "backward()/torch.autograd.grad()"
        notes.append(
            note("note.backward_many", count=observed.call_count, index=call.index, what=every, out=out_name)
        )
    x = next(iter(leaves)) if len(leaves) == 1 else "x"  # (d{out}/dx in the notes: the leaf's name)
    d = fmt.d_of(False, out_name, x)
    deriv = f"{d}{out_name}/{d}{x}"
    inner = [n for n in call.inner if n in leaves]
    if inner:
        listed = ", ".join(fmt.few(inner))
        notes.append(note("note.inner_pass", names=listed, out=out_name))
    if len(outputs) > 1:
        listed = ", ".join(outputs)
        notes.append(note("note.several", what=what, outputs=listed, label=differentiated or listed))
    elif call.gradient_given and output.numel() != 1:
        v = (differentiated or "v·").split("·")[0]
        notes.append(note("note.vjp", what=what, out=out_name, v=v, deriv=deriv))
    elif differentiated is not None and call.gradient_given:  # a number c: the grads of c·y
        c = differentiated.split("·")[0]
        notes.append(note("note.scaled", what=what, out=out_name, c=c, deriv=deriv))
    elif differentiated is None and call.gradient_given:  # a complex weight: autograd conjugates
        notes.append(note("note.complex_weight", what=what, out=out_name))
    elif differentiated is not None:  # ones for a non-scalar output: y.backward(torch.ones_like(y))
        notes.append(note("note.ones", what=what, out=out_name, count=output.numel()))
    return notes


def _accumulation_notes(caught: dict[str, Any], call: Call) -> list[Note]:
    """backward() added to a ``.grad`` that already held grads: one note each, or one for many."""
    added = [
        n
        for n, c in caught.items()
        if c is not None and c.grad_before is not None and call.kind == "backward"
    ]
    if len(added) > 2:  # a model's parameters: one note, not one per parameter
        listed = ", ".join(fmt.few(added))
        params = any(isinstance(caught[n].tensor, torch.nn.Parameter) for n in added)
        return [note("note.accumulated_many" if not params else "note.accumulated_params",
                     names=listed, count=len(added))]  # fmt: skip
    notes = []
    for name in added:
        c = caught[name]
        notes.append(
            note("note.accumulated", name=name, old=c.grad_before_text or fmt.values(c.grad_before), new=fmt.values(c.grad),
                 total=fmt.values(c.grad_after) if c.grad_after is not None and c.grad_kept else t("state.changed"))
        )  # fmt: skip
    return notes


def _returned_notes(caught: dict[str, Any], call: Call) -> list[Note]:
    """torch.autograd.grad() returned the grads the table shows and stored none: what ``.grad`` holds
    (a learner reads the grad column as ``x.grad``)."""
    if call.kind != "grad":
        return []
    names = [n for n, c in caught.items() if c is not None and c.grad is not None]
    if not names:
        return []
    shown = [
        n if n == "…" else f"{n}.grad = {_grad_text(kept_grad(caught[n].tensor))}" for n in fmt.few(names)
    ]
    return [note("note.grad_returned", listed=", ".join(shown))]


def _higher_order_notes(observed: Observation) -> list[Note]:
    notes = []
    for higher in observed.higher:
        if higher.kind == "backward":  # it added to .grad
            notes.append(note("note.higher_order", index=higher.index, what="backward()"))
        else:  # grad() returned it: say what it was
            found = "; ".join(
                f"{n}: {fmt.values(c.grad)}" for n, c in higher.leaves.items() if c.grad is not None
            )
            notes.append(note("note.higher_order_grad", index=higher.index, values=found or "—"))
    return notes


def _call_rows(
    call: Call, caught: dict[str, Any], leaves: dict, values: dict, grads: dict, lost: list[str], role: str
) -> list[TensorRow]:
    """The leaves' rows: their grad column is ``.grad`` right after a backward() (what the cell
    sees), the returned grad after a grad() call."""
    rows = []
    for n, leaf in leaves.items():
        c = caught.get(n)
        column = dense(c.grad_after) if c is not None and call.kind == "backward" else grads[n]
        added = (c.added_calls, c.held_before) if c is not None else (1, False)
        row = TensorRow.of(n, role, leaf, column, values.get(n), added)
        rows.append(dataclasses.replace(row, changed=n in lost and not _grad_kept(c)))
    return rows


def dense(grad: torch.Tensor | None) -> torch.Tensor | None:
    """A sparse grad (``nn.Embedding(sparse=True)``) as the dense tensor it stands for: what the
    report shows and sums up (a copy; a strided grad is returned as it is)."""
    if grad is None or grad.layout == torch.strided:
        return grad
    return grad.detach().to_dense()


def _copy_differs(leaf: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether *leaf* no longer holds *value*, the copy taken at the call (a change through ``.data``
    or numpy leaves ``_version`` as it was); False where no copy was taken (a big leaf)."""
    if value is leaf or value.shape != leaf.shape or value.layout != torch.strided:
        return False
    try:
        if value.data_ptr() == leaf.data_ptr():
            return False
        now = leaf.detach()
        if now.dtype == value.dtype and torch.equal(now, value):  # (one call, for most; nan needs the rest)
            return False
        same = (
            (now == value) | (torch.isnan(now) & torch.isnan(value))
            if now.is_floating_point()
            else now == value
        )
        return not bool(same.all())
    except RuntimeError:
        return False


def _merge_accumulated(notes: list[Note], added: list[Note], caught: dict[str, Any]) -> list[Note]:
    """ "the cell called backward() 2 times" and "x.grad already held 18, so backward() added this
    call's 18: x.grad = 36" in one note where what .grad held came from the cell's own calls (the
    grad column says "added up over 2 backward() calls" and shows the 36)."""
    many = next((i for i, n in enumerate(notes) if n.id == "note.backward_many"), None)
    if many is None or len(added) != 1 or added[0].id != "note.accumulated":
        return [*notes, *added]
    fields = added[0].fields
    leaf = caught.get(fields["name"])
    if leaf is None or leaf.held_before or leaf.added_calls < 2:
        return [*notes, *added]
    merged = note("note.backward_many_added", **notes[many].fields, **fields)
    return [*notes[:many], merged, *notes[many + 1 :]]


def _merge_after(notes: list[Note], after: list[Note]) -> list[Note]:
    """ "call 50 of 50" and "after it the cell changed w" in one note: one fact, one line."""
    if not after:
        return notes
    many = next(
        (i for i, n in enumerate(notes) if n.id in ("note.backward_many", "note.backward_many_added")), None
    )
    if many is None:
        return [*notes, *after]
    merged = note(notes[many].id + "_after", **notes[many].fields, changes=after[0].fields["changes"])
    return [*notes[:many], merged, *notes[many + 1 :]]


def _grad_kept(leaf: Any) -> bool:
    """Whether the grad a call caught is still what it was (a copy, or unchanged since)."""
    return leaf is None or leaf.grad_kept


def _fresh(base: str, ns: dict[str, Any]) -> str:
    """A made-up name no variable of the cell has (``out``, else ``out_1``, ...)."""
    if base not in ns:
        return base
    k = 1
    while f"{base}_{k}" in ns:
        k += 1
    return f"{base}_{k}"


def _differentiated(
    call: Call, out_names: tuple[str, ...], names: Mapping[int, str], ns: dict[str, Any]
) -> str | None:
    """What the call's grads are the grads of, when that is not its one output itself: ``2·y``
    (``backward(gradient=2.0)``), ``v·y`` (a vector *v*: a vector-Jacobian product), ``sum(y)``
    (ones for a non-scalar y), ``y1 + 2·y2`` (several outputs at once). None: the output itself."""
    if len(call.outputs) == 1 and not call.gradient_given and call.outputs[0].numel() == 1:
        return None
    weights = call.gradients if len(call.gradients) == len(call.outputs) else (None,) * len(call.outputs)
    vectors = 0
    terms = []
    for name, out, weight in zip(out_names, call.outputs, weights, strict=True):
        try:
            if isinstance(weight, torch.Tensor) and weight.is_complex():  # (autograd conjugates: no label)
                return None
            if not isinstance(weight, torch.Tensor) or _is_one(weight):
                terms.append(name if out.numel() == 1 else f"sum({name})")
            elif weight.numel() == 1:
                value = weight.item()
                text = fmt.number(value)
                text = text if float(text) == value else fmt.number(value, 8)  # 1.00001 is not 1
                terms.append(f"{text}·{name}")
            else:
                vectors += 1
                given = names.get(id(weight))
                made_up = _fresh("v" if len(call.outputs) == 1 else f"v{vectors}", ns)
                terms.append(f"{given or made_up}·{name}")
        except Exception:  # a weight that cannot be looked at (batched inside vmap)
            return None
    return " + ".join(terms)


def _is_one(weight: torch.Tensor) -> bool:
    with torch.no_grad():
        return bool((weight == 1).all())


def _changed(now: torch.Tensor, then: torch.Tensor, version: int) -> bool:
    """Whether .grad now differs from what it was after the call (the same memory, unchanged
    since: no need to compare every element of a big grad)."""
    if now.layout != torch.strided or then.layout != torch.strided:  # sparse grads (Embedding(sparse=True))
        try:
            return not torch.equal(now.to_dense(), then.to_dense())
        except RuntimeError:
            return True
    if now.data_ptr() == then.data_ptr() and now._version == version:
        return False
    if torch.equal(now, then):  # (one call: most grads, a model's few hundred, are equal; else nan may be)
        return False
    if now.is_floating_point() or now.is_complex():  # nan == nan here: a nan grad left as it was is unchanged
        same = (now == then) | (torch.isnan(now) & torch.isnan(then))
        return not bool(same.all())
    return not torch.equal(now, then)


def finite(tensor: torch.Tensor) -> bool:
    """No nan or inf in *tensor*: one fast reduction in the common case, no temporary copy."""
    if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
        return True
    if tensor.layout != torch.strided:  # a sparse tensor: its stored values
        tensor = (
            tensor.detach().coalesce().values() if tensor.layout == torch.sparse_coo else tensor.to_dense()
        )
    if tensor.is_floating_point() and tensor.element_size() == 1:  # float8: no norm of its own
        tensor = tensor.detach().float()
    with torch.no_grad():  # the L2 norm (a fast pass) is finite unless an element is not, or it overflows
        wide = torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else None
        if math.isfinite(float(torch.linalg.vector_norm(tensor.detach(), dtype=wide))):
            return True
        return bool(torch.isfinite(tensor.detach()).all())


AFTER_LISTED = 3  # leaves the cell changed after the call: with their values up to this many; more
# (an optimizer's step over a model's parameters) by name only, the first few and the last


def _changed_after(caught: dict, call: Call) -> list[Note]:
    """One note on what the cell did to the leaves and their .grad after the call shown."""
    changes: list[tuple[str, bool, Callable[[], str]]] = []  # (leaf, its .grad?, words with the values now)
    for name, c in caught.items():
        if c is None:
            continue
        leaf = c.tensor
        if leaf._version != c.version or _copy_differs(leaf, c.value):
            changes.append((name, False, partial(_value_now, name, leaf)))
        if call.kind == "backward" and c.grad_after is not None:
            now = kept_grad(leaf)
            if now is None:
                changes.append((name, True, partial(t, "after.grad_none", name=name)))
            elif now.detach().shape == c.grad_after.shape and _changed(
                now.detach(), c.grad_after, c.after_version
            ):
                changes.append((name, True, partial(_grad_now, name, now.detach())))
    if not changes:
        return []
    values = [name for name, of_grad, _ in changes if not of_grad]
    grads = [name for name, of_grad, _ in changes if of_grad]
    if len(set(values) | set(grads)) > AFTER_LISTED:  # by name only: the first few and the last
        gone = bool(grads) and all(kept_grad(caught[name].tensor) is None for name in grads)
        if values == grads and not gone:  # (an optimizer's step, then clipping: the same tensors)
            words = t("after.both_many", count=len(values), names=_few(values))
        else:
            parts = [t("after.values_many", count=len(values), names=_few(values))] if values else []
            if grads:
                says = "after.grads_none" if gone else "after.grads_many"
                parts.append(t(says, count=len(grads), names=_few(grads)))
            words = t("headline.sep").join(parts)
    else:
        said = [say() for _, _, say in changes]  # (w (now 2.92) and w.grad (zeroed: now 0))
        words = (
            said[0]
            if len(said) == 1
            else t("list.and", first=t("headline.sep").join(said[:-1]), last=said[-1])
        ).replace("） 和", "）和")  # (Chinese: no space after a full-width bracket)
    return [note("note.after", index=call.index, changes=words)]


def _grad_text(grad: torch.Tensor | None) -> str:
    return "None" if grad is None else fmt.values(grad.detach())


def _few(names: list[str]) -> str:
    """The first few of *names* and the last: ``a, b, c, …, z``."""
    return ", ".join(fmt.few(names, AFTER_LISTED, last=True))


def _value_now(name: str, leaf: torch.Tensor) -> str:
    return t("after.value", name=name, now=fmt.values(leaf.detach()))


def _grad_now(name: str, now: torch.Tensor) -> str:
    zero = not bool(now.any())
    return t("after.grad_zero" if zero else "after.grad_other", name=name, now=fmt.values(now))


def _non_finite(values: dict[str, torch.Tensor]) -> Callable[[], list[Note]]:
    """The notes on leaves whose value has a nan or inf, found when asked (a pass over each value:
    kept off the cell's path; the values are the ones the report holds)."""

    def notes() -> list[Note]:
        return [
            note("note.non_finite", name=name)
            for name, value in values.items()
            if value.device.type != "meta" and not finite(value)
        ]

    return notes


def _common_notes(out_name, leaves, values, grads, observed: Observation, rows, ns: dict) -> list[Note]:
    notes = []  # (a leaf the output does not use: its grad cell says "no path to the output")
    leaf_names = ", ".join(leaves) or t("word.the_leaves")
    read = set()
    for name in observed.nonleaf_reads:
        read.add(name)
        row = next((r for r in rows if r.name == name), None)
        fn = row.grad_fn if row is not None else None
        if fn is None:  # (a row the table adds later: the cell's own tensor tells)
            value = value_at(ns, name)
            fn = type(value.grad_fn).__name__ if is_tensor(value) and value.grad_fn is not None else None
        notes.append(note("note.nonleaf_read", name=name, fn=fn or t("word.an_operation"), leaves=leaf_names))
    return notes  # (a non-leaf's None grad: its grad cell says why, no note repeats it)


def _computed(
    out_name: str,
    output: torch.Tensor,
    ns: dict[str, Any],
    names: Mapping[int, str],
    wrt: dict[str, torch.Tensor],
    assigned: list[str],
    retain_grad: bool,
    observed: Observation,
    steps: bool = False,
    owned: set[int] | None = None,
    graph: dict[int, Any] | None = None,
) -> First:
    """The cell did not differentiate this output: do it here (``own_pass.py``), running none of the
    user's hooks, writing no user's .grad, freeing no graph; for the named leaves behind it (and with
    --retain-grad the named intermediates). *graph*: the output's walk, if finding it made one."""
    graph = graph if graph is not None else nodes_behind([output])[0]  # (one walk for all)
    leaves = dict(wrt) if wrt else _named_graph_leaves(graph, names, assigned)
    notes: list[Note] = []
    if not leaves or not output.requires_grad:
        return _nothing_to_differentiate(out_name, output, wrt)
    intermediates = _named_intermediates(ns, assigned, names, output) if retain_grad else {}
    values, summed = _values(leaves), False
    grads: dict[str, torch.Tensor | None] = dict.fromkeys(leaves)
    inter_grads: dict[str, torch.Tensor | None] = dict.fromkeys(intermediates)
    tracer, user_code = None, list[str]()
    if output.is_complex():  # (its grads are not computed: the leaves it is made from, no others)
        notes.append(note("err.complex", out=out_name))
        leaves = leaves if wrt else _in_graph(leaves, output)
        values, grads = _values(leaves), dict.fromkeys(leaves)
    else:
        target, summed = (output, False) if output.numel() == 1 else (output.sum(), True)
        inputs = [*leaves.values(), *intermediates.values()]
        computed, problems, user_code, tracer = _differentiate(
            target, inputs, out_name, observed, steps, graph
        )
        if summed and not user_code:  # (no grads: not "the grads are of y.sum()")
            notes.append(note("note.summed", out=out_name, count=output.numel()))
        notes += problems
        grads = dict(zip(leaves, computed[: len(leaves)], strict=True))
        inter_grads = dict(zip(intermediates, computed[len(leaves) :], strict=True))
        intermediates = {n: t for n, t in intermediates.items() if inter_grads[n] is not None}
        if problems and not user_code:  # no grads to show: only the output and what went wrong
            leaves, grads, values, intermediates = {}, {}, {}, {}
        elif not wrt:  # the leaves are the named ones the output depends on
            leaves, grads, values = _depended_on(leaves, grads, values, output, bool(user_code))
            if not leaves:
                notes.append(_no_dependence(out_name, output, wrt))
        notes += _grads_stored(leaves, grads, owned, out_name, output)
    withheld = bool(user_code) or output.is_complex()  # (grads not computed: not "no path", not a number)
    rows = _leaf_rows(leaves, values, grads, "input" if wrt else "leaf", withheld)
    rows += [TensorRow.of(n, "intermediate", tensor, inter_grads[n]) for n, tensor in intermediates.items()]
    rows += _output_rows([(out_name, output)], leaves)
    notes += _common_notes(out_name, leaves, values, grads, observed, rows, ns)
    return First(
        output, out_name, leaves, values, grads, tuple(rows), tuple(notes), summed, None, 0,
        tracer if tracer is not None and leaves else None,
        (_non_finite(values),), withheld=withheld,
    )  # fmt: skip


def _output_rows(outputs: list[tuple[str, torch.Tensor]], leaves: dict[str, torch.Tensor]) -> list[TensorRow]:
    """The output's row (and a call's other outputs'), unless it is one of the leaves (``y = x``)."""
    return [
        TensorRow.of(name, "output", tensor, kept_grad(tensor))
        for name, tensor in outputs
        if all(tensor is not leaf for leaf in leaves.values())
    ]


def _nothing_to_differentiate(out_name: str, output: torch.Tensor, wrt: dict[str, torch.Tensor]) -> First:
    """The output alone, with the note why there is nothing to differentiate it by."""
    alone = (TensorRow.of(out_name, "output", output, None),)
    return First(output, out_name, dict(wrt), _values(wrt), dict.fromkeys(wrt), alone,
                 (_no_dependence(out_name, output, wrt),))  # fmt: skip


def _leaf_rows(leaves: dict, values: dict, grads: dict, role: str, withheld: bool) -> list[TensorRow]:
    """The leaves' rows; *withheld*: their grads were not computed (the user's code is in the graph)."""
    rows = list(_rows(leaves, values, grads, role))
    return [dataclasses.replace(row, withheld=True) for row in rows] if withheld else rows


def _depended_on(leaves: dict, grads: dict, values: dict, output: torch.Tensor, withheld: bool) -> tuple:
    """The leaves (and their grads, values) *output* depends on: those with a grad, or (the grads
    *withheld*: not computed) those in its graph."""
    found = _in_graph(leaves, output) if withheld else None
    kept = found if found is not None else {n: leaf for n, leaf in leaves.items() if grads[n] is not None}
    return kept, {n: grads[n] for n in kept}, {n: values[n] for n in kept}


def _differentiate(
    target: torch.Tensor,
    inputs: list[torch.Tensor],
    out_name: str,
    observed: Observation,
    steps: bool,
    graph: dict[int, Any],
) -> tuple[tuple[torch.Tensor | None, ...], list[Note], list[str], Any]:
    """%%grad's own pass for *target*, unless the user's code is in its graph (then running it would
    do what the plain cell never does: print, append, count): (the grads, Nones where none were
    computed; the notes why not; the user's code found; the --steps tracer)."""
    facts = GraphFacts.of(graph, observed.first_node)
    saved_hooks = observed.saved_hooks or facts.earlier_saved_hooks
    user_code = list(facts.users_code) + (["saved_tensors_hooks"] if saved_hooks else [])
    if user_code:
        missing = facts.no_backward  # (a Function without a backward: backward() would raise)
        kind = "note.no_backward_defined" if missing else "note.users_backward"
        problem = note(kind, out=out_name, what=", ".join(missing or user_code))
        return (None,) * len(inputs), [problem], user_code, None
    tracer = None
    if steps:
        from ..capture.tracer import Tracer

        tracer = Tracer((target,))
    hook_free = facts.hook_free and not observed.hooks_added and observed.first_node >= 0
    everyone = [*inputs, *(_other_leaves(graph, inputs) if steps else ())]  # (--steps: the whole pass)
    computed, problem = _our_pass(target, everyone, tracer, out_name, hook_free)
    return computed[: len(inputs)], [problem] if problem is not None else [], [], tracer


def _other_leaves(graph: dict[int, Any], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The leaves of *graph* besides *inputs*: ``--steps --wrt net.2.bias`` traces the pass
    ``backward()`` would run, every node of it (a pass to the bias alone skipped the layers before,
    and the forward lines read operands it never named)."""
    have, accumulate = {id(t) for t in inputs}, accumulate_grad_class()
    found = (node.variable for node in graph.values() if type(node) is accumulate)  # type: ignore[attr-defined]
    return [leaf for leaf in found if id(leaf) not in have and leaf.requires_grad]


def _named_graph_leaves(graph: dict[int, Any], names: Any, assigned: list[str]) -> dict[str, torch.Tensor]:
    """The named leaves of the output's *graph* (that require grad), those the cell assigned first."""
    accumulate = accumulate_grad_class()
    found = [node.variable for node in graph.values() if type(node) is accumulate]  # type: ignore[attr-defined]
    if isinstance(names, TensorNames):
        names.cover(found)
    named = {names[id(t)]: t for t in found if id(t) in names and t.requires_grad}
    order = {name: i for i, name in enumerate(assigned)}  # then as named: a model's own order
    order.update((name, len(assigned) + i) for i, name in enumerate(names.values()) if name not in order)
    return dict(sorted(named.items(), key=lambda kv: order[kv[0]]))


def _named_intermediates(
    ns: dict[str, Any], assigned: list[str], names: Mapping[int, str], output: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The non-leaf tensors the cell named (--retain-grad: their grads are computed too)."""
    found = {}
    for name in assigned:
        tensor = ns.get(name)
        if (
            isinstance(tensor, torch.Tensor)
            and tensor is not output
            and tensor.grad_fn is not None
            and names.get(id(tensor)) == name
        ):
            found[name] = tensor
    return found


def _our_pass(
    target: torch.Tensor, inputs: list[torch.Tensor], tracer: Any, out_name: str, hook_free: bool
) -> tuple[tuple[torch.Tensor | None, ...], Note | None]:
    """%%grad's own pass over the user's graph: no .grad written but our own leaves', the graph kept
    for the next cell, none of the user's hooks run. Where the graph can hold none (every node made
    by this cell, which added no hook, and no leaf with one) autograd's engine runs it
    (``torch.autograd.grad``); else ``own_pass.py`` calls the nodes one by one, running no hook.
    The grads, or Nones and the note why not."""
    try:
        if hook_free:
            with (
                tracer if tracer is not None else contextlib.nullcontext(),
                torch.autograd.set_detect_anomaly(False),  # (anomaly mode is for the cell's own passes)
            ):
                computed = torch.autograd.grad(target, inputs, allow_unused=True, retain_graph=True)
        else:
            computed = own_grads(target, inputs, tracer.unhooked() if tracer is not None else None)
    except RuntimeError as e:  # e.g. --of an intermediate whose graph the cell's backward() freed
        hint = hint_for(e)
        error = f"{e}".split("\n")[0] + (f" {hint}" if hint else "")
        return (None,) * len(inputs), note("err.backward_failed", out=out_name, error=error)
    return tuple(None if g is None else dense(g.detach()) for g in computed), None  # (a sparse grad: dense)


def _grads_stored(
    leaves: dict[str, torch.Tensor], grads: dict, owned: set[int] | None, out_name: str, output: torch.Tensor
) -> list[Note]:
    """Our own leaves (--wrt) carry their grads; the user's .grad is left as it was, and a note says
    so (with the call that would fill it), or that it still holds an earlier cell's grad."""
    notes = []
    stale, same = [], []
    for name, leaf in leaves.items():
        if owned is not None and id(leaf) in owned:
            if leaf.grad is None:  # our own leaf carries its grad (unless the cell gave it one itself)
                leaf.grad = grads[name]
        elif leaf.grad is not None:
            stale.append(name)
            old = leaf.grad.detach()
            if grads[name] is not None and old.shape == grads[name].shape and torch.equal(old, grads[name]):
                same.append(f"{name}.grad")  # (an earlier cell's backward() of it)
            else:
                notes.append(note("note.stale", name=name, old=fmt.values(old)))
    if same:  # (one note for a model's parameters, not one each)
        listed = fmt.few(same)
        notes.insert(0, note("note.stale_same", names=", ".join(listed), count=len(same)))
    user = [n for n in leaves if (owned is None or id(leaves[n]) not in owned) and n not in stale]
    if user and any(grads[n] is not None for n in user):  # (a stale one's note says it was left as it was)
        listed = fmt.few([f"{n}.grad" for n in user])
        call = f"{out_name}.backward()" if output.numel() == 1 else f"{out_name}.sum().backward()"
        call = call if fmt.is_atom(out_name) else f"({out_name}).backward()"  # (Y.sum() * 2: in brackets)
        notes.append(note("note.not_stored", names=", ".join(listed), out=out_name, call=call))
    return notes


@dataclass(frozen=True)
class GraphFacts:
    """What %%grad's own pass must know of the output's backward graph, from one pass over its
    nodes (a 6,000-op cell's graph is looked at once, not three times):

    - *users_code*: the user's own Python code in it (a custom ``autograd.Function``'s backward,
      a module's backward hook), by name: running it would do what the plain cell never does;
    - *earlier_saved_hooks*: a node an earlier cell made saved a tensor with an unpack hook (its
      ``saved_tensors_hooks`` or non-reentrant ``checkpoint``; this cell's own are watched);
    - *hook_free*: every node was made by this cell (an earlier cell's node may carry a hook:
      nodes are numbered in the order they are made) and no leaf in it has a hook, so autograd's
      engine may run it (the cell's own ``register_hook()`` calls are watched while it runs);
    - *no_backward*: those of *users_code* that define no backward at all (backward() would raise)."""

    users_code: tuple[str, ...]
    earlier_saved_hooks: bool
    hook_free: bool
    no_backward: tuple[str, ...] = ()

    @classmethod
    def of(cls, graph: dict[int, Any], first_node: int) -> GraphFacts:
        accumulate, custom = accumulate_grad_class(), torch.autograd.function.BackwardCFunction
        nodes = graph.values()
        if first_node >= 0 and earliest_sequence_number(nodes) >= first_node:
            earlier = []  # (the common case, told without a Python loop: a leaf's node has the
        else:  # largest number there is, so the smallest is an op's)
            earlier = [
                node
                for node in nodes
                if type(node) is not accumulate and (first_node < 0 or sequence_number(node) < first_node)
            ]
        hooked = any(hook_dict(node.variable) for node in nodes if type(node) is accumulate)  # type: ignore[attr-defined]
        hook_free = first_node >= 0 and not earlier and not hooked
        saved_hooks = any(has_unpack_hook(node) for node in earlier)
        found: dict[str, None] = {}
        missing: dict[str, None] = {}
        if any(issubclass(kind, custom) for kind in set(map(type, nodes))):  # (rare: look at each)
            for node in nodes:
                if isinstance(node, custom):
                    name = type(node).__name__.removesuffix("Backward")
                    name = t("word.module_hook") if name == "BackwardHookFunction" else name
                    found[name] = None
                    if _defines_no_backward(node):
                        missing[name] = None
        return cls(tuple(found), saved_hooks, hook_free, tuple(missing))


def _defines_no_backward(node: Any) -> bool:
    """Whether a custom Function's node has no backward of its own (``backward()`` through it raises
    NotImplementedError: "You must implement either the backward or vjp method")."""
    function = torch.autograd.Function
    kind = getattr(node, "_forward_cls", None)
    return kind is not None and kind.backward is function.backward and kind.vjp is function.vjp


def _no_dependence(
    name: str, value: torch.Tensor, wrt: dict[str, torch.Tensor], leaves: list[str] | None = None
) -> Note:
    """Why *value* has nothing to differentiate; *leaves*: the cell's own leaves that require grad
    (then a path to them was cut: no_grad(), detach(), a new tensor made from numbers)."""
    if value.is_leaf and value.requires_grad:
        return note("err.leaf_only", name=name)
    if value.grad_fn is None and not torch.is_grad_enabled():  # (set_grad_enabled(False) in a cell before)
        return note("err.grad_off", name=name)
    if wrt:
        return note("err.no_path", name=name, wrt=", ".join(wrt))
    if value.grad_fn is not None:  # it does depend on leaves, but none of them has a name
        return note("err.unnamed_leaf", name=name)
    if leaves:
        return note("err.no_path", name=name, wrt=", ".join(leaves))
    return note("err.no_leaf", name=name)


WALK_BUDGET = 100_000  # _find_output: nodes walked in all to tell which tensor depends on --wrt


def _find_output(
    ns: dict[str, Any],
    names: Mapping[int, str],
    last_value: Any,
    assigned: list[str],
    of: str | None,
    wrt: dict[str, torch.Tensor],
    walks: dict[int, dict] | None = None,
) -> tuple[str, torch.Tensor] | Note:
    """``--of``, else the last expression, else the last assigned tensor that
    depends on the leaves; a Note when there is none. *walks*: ``id(tensor) -> its graph`` for
    the tensors walked here (the output's report uses its walk again)."""
    wrt_ids = {id(tensor) for tensor in wrt.values()}
    depends = _Dependence(wrt_ids, walks)

    def is_wrt_leaf(value: torch.Tensor) -> bool:
        return id(value) in wrt_ids

    if of is not None:
        if of not in ns:
            return note("err.of_missing", name=of)
        value = ns[of]
        if not isinstance(value, torch.Tensor):
            return note("err.of_not_tensor", name=of, kind=type(value).__name__)
        return of, value

    tensors: list[tuple[str, torch.Tensor]] = []
    if isinstance(last_value, torch.Tensor):
        tensors.append((names.get(id(last_value), "out"), last_value))
    for name in reversed(assigned):
        value = ns.get(name)
        if isinstance(value, torch.Tensor) and not (name in wrt and is_wrt_leaf(value)):
            tensors.append((name, value))  # (y = x makes y the leaf x itself: dy/dx = 1)
    for name, value in tensors:
        if depends(value) or (is_wrt_leaf(value) and value.requires_grad):
            return name, value
    leaves = [name for name, value in tensors if value.is_leaf and value.requires_grad]
    last = ns.get(assigned[-1]) if assigned else None
    if leaves and isinstance(last, (int, float, complex)) and not isinstance(last, bool):  # y = x.item() ** 2
        return note("err.number_output", name=assigned[-1], value=fmt.number(last), leaf=leaves[0])
    if tensors:
        return _no_dependence(*tensors[0], wrt, [n for n in leaves if n != tensors[0][0]])
    return _no_output(ns, last_value, assigned, wrt)


def _no_output(
    ns: dict[str, Any], last_value: Any, assigned: list[str], wrt: dict[str, torch.Tensor]
) -> Note:
    """Why no tensor of the cell's can be the output: its last value is a number (``y.item()``),
    nothing came from the --wrt leaves, or nothing was made at all."""
    if last_value is not None:
        what, value = t("word.last_value"), last_value
    elif assigned and assigned[-1] in ns:
        what, value = assigned[-1], ns[assigned[-1]]
    else:
        what, value = None, None
    if what is not None and isinstance(value, (numbers.Number, list, tuple, dict)) and wrt:
        message = "err.not_tensor_number" if isinstance(value, numbers.Number) else "err.not_tensor"
        return note(message, what=what, kind=type(value).__name__)
    if wrt:
        return note("err.no_output_from", wrt=", ".join(wrt))
    return note("note.nothing")


class _Dependence:
    """Whether a tensor depends on the --wrt leaves (*wrt_ids*), asked of each candidate output in
    turn: walks of their graphs share one budget (:data:`WALK_BUDGET` nodes; past it a big graph is
    taken to depend on them, as autograd will tell), and the walk of one that does is kept in
    *walks* (the output's report uses it again instead of walking twice)."""

    def __init__(self, wrt_ids: set[int], walks: dict[int, dict] | None):
        self.wrt_ids, self.walks, self.budget = wrt_ids, walks, WALK_BUDGET

    def __call__(self, tensor: torch.Tensor) -> bool:
        if tensor.grad_fn is None:
            return False
        if not self.wrt_ids:
            return True  # which named leaves: autograd finds them (see _computed)
        graph, cut = nodes_behind([tensor], self.budget)
        if cut:
            return True
        self.budget -= len(graph)
        found = any(id(leaf) in self.wrt_ids for leaf in leaves_in(graph))
        if found and self.walks is not None:
            self.walks[id(tensor)] = graph
        return found


def checked_against_code(first: Any, tree: Any) -> Any:
    """*first*'s notes told against the cell's code: where it cut the graph, and whether a
    Python number was computed from a leaf (:func:`_number_note_checked`)."""
    return _number_note_checked(_cut_said(first, tree), tree)


def _cut_said(first: Any, tree: Any) -> Any:
    """ "y has no path back to x" said with its cause where the code shows it: y was computed in a
    ``no_grad`` block, or from a ``detach()`` (instead of asking which of four it was)."""
    said = [n for n in first.notes if n.id == "err.no_path"]
    if not said or tree is None:
        return first
    no_grad, detached = no_grad_names(tree), detached_names(tree)
    todo, seen = [said[0].fields["name"]], set[str]()  # (z = x.detach(); y = z * 2: y is cut through z)
    while todo and len(seen) < 50:
        name = todo.pop(0)
        seen.add(name)
        if name in no_grad:
            better = note("err.no_path_no_grad", cut=name, block=no_grad[name], **said[0].fields)
            break
        if name in detached:
            source = detached[name] if detached[name].endswith(".detach()") else f"{detached[name]}.detach()"
            better = note("err.no_path_detached", source=source, **said[0].fields)
            break
        todo += sorted(read_into(tree, name) - seen - {"*"})
    else:
        return first
    return dataclasses.replace(first, notes=tuple(better if n is said[0] else n for n in first.notes))


def _number_note_checked(first: Any, tree: Any) -> Any:
    """The "y is a Python number" note only where y was computed from the leaf it names (``y =
    x.item() ** 2``); a number the cell just set (``epochs = 10``) leaves the leaf computed nothing."""
    said = [n for n in first.notes if n.id == "err.number_output"]
    if not said:
        return first
    reads: set[str] = set()
    todo = [said[0].fields["name"]]  # (v = x.item(); y = v ** 2: y is read from x too)
    while todo and "*" not in reads:
        found = read_into(tree, todo.pop()) - reads
        reads |= found
        todo += found
    if "*" in reads or said[0].fields["leaf"] in reads:
        return first
    notes = tuple(note("err.leaf_only", name=n.fields["leaf"]) if n in said else n for n in first.notes)
    return dataclasses.replace(first, notes=notes)
