"""The private PyTorch touches of %%grad (``capture/internals.py``), each checked against the
behaviour %%grad relies on: when a PyTorch release changes one, a test here fails first, with a
message that names it (the compat suite runs these on every supported torch)."""

from __future__ import annotations

import math

import torch

from torchgrad_magic.capture import internals
from torchgrad_magic.capture.internals import (
    accumulate_grad_class,
    earliest_sequence_number,
    engine_slot,
    forget_kwargs_flag,
    has_post_accumulate_hooks,
    hook_dict,
    input_shapes,
    is_transformed,
    next_sequence_number,
    nodes_behind,
    outside_transforms,
    sequence_number,
)
from torchgrad_magic.capture.observe import graph_leaves


def test_the_engine_slot_is_where_every_backward_and_grad_call_goes():
    owner, attr = engine_slot()
    engine = getattr(owner, attr)
    calls = []

    class Spy:
        def run_backward(self, *args, **kwargs):
            calls.append(kwargs.get("accumulate_grad", args[6] if len(args) > 6 else None))
            return engine.run_backward(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(engine, name)

    setattr(owner, attr, Spy())
    try:
        x = torch.tensor(3.0, requires_grad=True)
        (3 * x**2).backward()
        torch.autograd.backward([3 * x**2])
        (g,) = torch.autograd.grad(3 * x**2, x)
    finally:
        setattr(owner, attr, engine)
    assert calls == [True, True, False], (
        "torch.autograd no longer calls Variable._execution_engine.run_backward"
    )
    assert g.item() == 18 and x.grad.item() == 36


def test_functorch_wrapped_tensors_are_recognised():
    seen = []
    torch.func.grad(lambda t: (seen.append(is_transformed(t)), t**3)[1])(torch.tensor(2.0))
    assert seen == [True] and not is_transformed(torch.tensor(2.0))


def test_a_loop_step_tells_transforms_with_one_call():
    """The short way of a loop's backward() asks whether any torch.func transform is active (one
    call, not two per output), and still tells torch's older vmap (is_grads_batched) by tensor."""
    from torch._vmap_internals import _vmap

    plain = torch.tensor(2.0, requires_grad=True) * 3
    assert outside_transforms((plain,)) and outside_transforms((plain, plain))
    inside = []
    torch.func.grad(lambda t: (inside.append(outside_transforms((t,))), t**3)[1])(torch.tensor(2.0))
    batched = []
    _vmap(lambda g: (batched.append(outside_transforms((g,))), g)[1], 0, 0)(torch.ones(3, 2))
    assert inside == [False] and batched == [False], (
        "torch._C._are_functorch_transforms_active / is_legacy_batchedtensor changed"
    )
    escaped = []
    torch.func.grad(lambda t: (escaped.append(t * 1), t**3)[1])(torch.tensor(2.0))
    assert not outside_transforms((escaped[0],)), "a tensor that escaped torch.func.grad is not told"
    assert not outside_transforms((3.0,))  # (not a tensor: the long way tells)


def test_the_graph_walk_finds_leaves_by_their_accumulate_grad_node():
    """The walk at every backward() tells a leaf's node by its class (found once with public
    calls): if torch changed that, no leaf would be found, and this fails first."""
    assert accumulate_grad_class().__name__ == "AccumulateGrad"
    w, b = torch.ones(3, requires_grad=True), torch.zeros((), requires_grad=True)
    net = torch.nn.Linear(3, 2)
    y = (net(w * 2 + b).tanh().sum() + w.sum()) * b
    found = graph_leaves((y,))
    assert {id(t) for t in found} == {id(w), id(b), id(net.weight), id(net.bias)}
    assert graph_leaves((w,)) == [w] and graph_leaves((y,), limit=2) is None


def test_a_tensors_hook_dict_is_read_when_the_pass_reaches_it():
    """%%grad's own pass empties it and puts the hooks back: the hook must not run meanwhile."""
    x = torch.tensor(2.0, requires_grad=True)
    h = x * 3
    calls = []
    h.register_hook(lambda g: calls.append(1) or g * 10)
    hooks = hook_dict(h)
    assert isinstance(hooks, dict) and len(hooks) == 1, "Tensor._backward_hooks is not the hook dict"
    kept = list(hooks.items())
    hooks.clear()
    (g,) = torch.autograd.grad(h * 2, x, retain_graph=True)
    assert calls == [] and g.item() == 6, "PyTorch no longer reads Tensor._backward_hooks at call time"
    hooks.update(kept)
    (g,) = torch.autograd.grad(h * 2, x)
    assert calls == [1] and g.item() == 60
    assert not hook_dict(torch.ones(2))


def test_sequence_numbers_follow_the_order_nodes_were_made():
    x = torch.tensor(1.0, requires_grad=True)
    a = x.sin()
    b = a * 2
    c = b.exp()
    assert sequence_number(a.grad_fn) < sequence_number(b.grad_fn) < sequence_number(c.grad_fn)


def test_removing_a_global_kwargs_hook_leaves_no_global_hook_behind():
    from torch.nn.modules import module as nn_module

    handle = nn_module.register_module_forward_hook(lambda m, a, k, o: None, with_kwargs=True)
    handle.remove()
    forget_kwargs_flag(handle.id)
    assert not nn_module._has_any_global_hook(), "a removed global module hook still counts"


def test_a_nodes_inputs_say_the_shape_dtype_and_device_a_grad_is_fitted_to():
    """%%grad's own pass sums a broadcast grad to its input's shape and casts it to its dtype, as
    the engine does, from the node's input metadata."""
    w = torch.ones((), dtype=torch.float64, requires_grad=True)
    y = torch.ones(3) * w  # (float32 times a 0-dim float64: float32, shape (3,))
    mul = y.grad_fn
    shapes = [input_shapes(node)[slot] for node, slot in mul.next_functions if node is not None]
    assert shapes == [((), torch.float64, torch.device("cpu"))], shapes  # w's: what its grad becomes
    assert input_shapes(mul) == (((3,), torch.float32, torch.device("cpu")),)


def test_the_one_graph_walk_sees_every_node_once_and_says_when_it_was_cut_short():
    """Every stage's walk over a backward graph is ``nodes_behind``: along ``next_functions``."""
    x = torch.tensor(2.0, requires_grad=True)
    h = x * x  # MulBackward0 -> AccumulateGrad (twice: one node)
    y = h.sin() + h.cos()  # AddBackward0 -> Sin, Cos -> the same Mul
    nodes, cut = nodes_behind([y])
    kinds = sorted(type(n).__name__ for n in nodes.values())
    assert kinds == ["AccumulateGrad", "AddBackward0", "CosBackward0", "MulBackward0", "SinBackward0"]
    assert not cut and all(id(n) == k for k, n in nodes.items())
    some, cut = nodes_behind([y.grad_fn], limit=2)
    assert len(some) == 2 and cut


def test_the_leaf_node_class_is_found_also_when_first_asked_under_no_grad(monkeypatch):
    from torchgrad_magic.capture import internals

    monkeypatch.setattr(internals, "_ACCUMULATE", [])
    with torch.no_grad():
        assert internals.accumulate_grad_class().__name__ == "AccumulateGrad"


def test_copy_all_copies_in_one_batched_op_exactly_and_leaves_grad_mode_as_it_was(monkeypatch):
    assert internals._FOREACH_COPY is not None, "torch._foreach_copy_ is gone: copy_all copies one by one"
    w = torch.tensor([[1.0, -0.0], [float("nan"), 3.5]], requires_grad=True)
    sources = [w, torch.arange(6.0).reshape(3, 2).t(), torch.tensor([1 + 2j])]  # a leaf, strided, complex
    destinations = [torch.empty_like(s) for s in sources]
    internals.copy_all(destinations, sources)
    for d, s in zip(destinations, sources, strict=True):
        torch.testing.assert_close(d, s.detach(), rtol=0, atol=0, equal_nan=True)
        assert not d.requires_grad and d.grad_fn is None
    assert str(destinations[0][0, 1].item()) == "-0.0" and torch.is_grad_enabled()
    with torch.no_grad():
        internals.copy_all(destinations[:1], sources[:1])
        assert not torch.is_grad_enabled()
    monkeypatch.setattr(internals, "_FOREACH_COPY", None)  # one by one: the same
    destinations[1].zero_()
    internals.copy_all(destinations, sources)
    assert torch.equal(destinations[1], sources[1]) and torch.is_grad_enabled()


def test_the_earliest_sequence_number_is_the_first_node_made():
    x = torch.tensor(1.0, requires_grad=True)
    a = x * 2
    b = a.sin() + a
    nodes = nodes_behind([b])[0].values()
    ops = [n for n in nodes if type(n) is not accumulate_grad_class()]
    assert earliest_sequence_number(ops) == sequence_number(a.grad_fn) == min(map(sequence_number, ops))
    assert earliest_sequence_number([]) > sequence_number(b.grad_fn)


def test_a_leafs_node_numbers_after_every_op_so_the_earliest_of_a_graph_is_an_ops():
    """GraphFacts (derive/backward.py) tells "every op of this graph was made by this cell" from
    the smallest sequence number of all its nodes at once: a leaf made long before (an earlier
    cell's x) must not count. Were that to change, the answer stays right but takes a loop."""
    x = torch.tensor(1.0, requires_grad=True)
    start = next_sequence_number()
    y = (x * 2).sin()
    nodes = list(nodes_behind([y])[0].values())
    assert earliest_sequence_number(nodes) >= start  # the leaf's AccumulateGrad is not the smallest
    leaf = next(n for n in nodes if type(n) is accumulate_grad_class())
    assert sequence_number(leaf) > max(sequence_number(n) for n in nodes if n is not leaf)


def test_a_leafs_post_accumulate_hooks_are_seen():
    """``register_post_accumulate_grad_hook`` keeps its functions in ``_post_accumulate_grad_hooks``
    (the optimizer in backward: the observer then catches each call's grads with a hook of its
    own, as the user's hook may take ``.grad`` away)."""
    w = torch.zeros(2, requires_grad=True)
    assert not has_post_accumulate_hooks(w)
    handle = w.register_post_accumulate_grad_hook(lambda p: None)
    assert has_post_accumulate_hooks(w), "PyTorch no longer keeps them in Tensor._post_accumulate_grad_hooks"
    handle.remove()
    assert not has_post_accumulate_hooks(w)


def test_norms_are_one_batched_call_equal_to_vector_norm(monkeypatch):
    """A model report's norms: torch._foreach_norm over every parameter at once, the numbers of
    torch.linalg.vector_norm (nan and inf carried, the 0-norm counting nonzero elements)."""
    assert internals._FOREACH_NORM is not None, "torch._foreach_norm is gone: norms are taken one by one"
    tensors = [torch.randn(4, 3), torch.tensor([0.0, float("nan"), 2.0]), torch.tensor([float("inf"), 0.0])]
    for order in (2, 1, math.inf, 0):
        expected = [torch.linalg.vector_norm(t, order) for t in tensors]
        got = internals.norms(tensors, order)
        torch.testing.assert_close(torch.stack(got), torch.stack(expected), equal_nan=True)
    low = [torch.randn(5, dtype=torch.bfloat16)]
    assert internals.norms(low, 2, torch.float32)[0].dtype == torch.float32
    calls = []

    def refuses(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("refused")

    monkeypatch.setattr(internals, "_FOREACH_NORM", refuses)
    torch.testing.assert_close(torch.stack(internals.norms(tensors[:1], 2)), torch.stack([tensors[0].norm()]))
    assert calls == [1]  # (refused: one call per tensor instead)
