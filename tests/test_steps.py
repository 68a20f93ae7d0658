"""--steps: the chain rule with autograd's own numbers.

Oracles: ``torch.autograd.grad`` for every leaf (the product of the local factors along each
path, summed over paths) and for every local factor (the node's output w.r.t. its input);
hand-derived values for the tutorial's examples.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from torchgrad_magic import format as fmt
from torchgrad_magic import grad
from torchgrad_magic.derive.steps import SHOWN, TRACE_LIMIT, Fold, Steps


def edge(steps: Steps, name: str, to: str):
    for step in steps.steps:
        if step.name == name:
            for e in step.edges:
                if e.to == to:
                    return step, e
    raise AssertionError(f"no edge {name} -> {to} in {[s.forward for s in steps.steps]}")


def path_sums(steps: Steps) -> dict[str, float]:
    """Back-propagate with the steps' local factors only: d out / d each input."""
    adjoint: dict[str, float] = {steps.output: 1.0}
    for step in steps.steps:
        upstream = adjoint.get(step.name, 0.0)
        for e in step.edges:
            assert e.local is not None and e.local.numel() == 1, (step.node, e)
            adjoint[e.to] = adjoint.get(e.to, 0.0) + upstream * e.local.item()
    return adjoint


# ---------------------------------------------------------------------------
# the tutorial's examples, both entry points
# ---------------------------------------------------------------------------
def test_three_x_squared(run):
    result = run("--wrt x=3 --steps", "y = 3 * x ** 2")
    steps = result.steps
    assert steps.forward == ("a = x ** 2", "y = 3 · a")
    assert steps.made_up == ("a",)
    assert [s.node for s in steps.steps] == ["MulBackward0", "PowBackward0"]
    mul, pow_ = steps.steps
    assert mul.forward == "y = 3 · a" and mul.arriving.item() == 1
    (to_a,) = mul.edges
    assert to_a.to == "a" and to_a.formula == "3" and to_a.local.item() == 3 and to_a.sent.item() == 3
    (to_x,) = pow_.edges
    assert to_x.formula == "2·x" and to_x.local.item() == 6 and to_x.sent.item() == 18 and to_x.into_grad
    text = steps.to_text()
    assert "dy/da = 1 · 3 = 3" in text
    assert "∂a/∂x = 2·x = 6" in text and "dy/dx = 3 · 6 = 18 → x.grad" in text
    assert "chain rule" in str(result)


def test_several_paths_sum_at_the_leaf(run):
    result = run("--wrt u=3 v=4 --steps", "f = u**3 + v**2 + 4*u*v")
    sums = {leaf.name: leaf for leaf in result.steps.leaves}
    assert [g.item() for _, g in sums["u"].parts] == [27, 16]  # u**3's branch first, as in the code
    assert [g.item() for _, g in sums["v"].parts] == [8, 12]
    assert sums["u"].total.item() == 43 and sums["v"].total.item() == 20
    lines = result.steps.leaf_lines()
    assert lines[0].startswith("∂f/∂u = 27 + 16 = 43") and lines[1].startswith("∂f/∂v = 8 + 12 = 20")
    # each term is traced to its branch: the step that sent it undoes u**3, resp. (4·u)·v
    by_index = {s.index: s for s in result.steps.steps}
    assert [by_index[i].forward for i, _ in sums["u"].parts] == ["a = u ** 3", "e = 4 · u"]


def test_quadratic_with_constants(run):
    result = run("--wrt x=3 --steps", "y = 6*x**2 + 2*x + 4")
    steps = result.steps
    assert steps.forward[-1] == "y = e + 4"  # the constant, from the record
    assert "2 · x" in " ".join(steps.forward) and "6 · a" in " ".join(steps.forward)
    (leaf,) = steps.leaves
    assert sorted(g.item() for _, g in leaf.parts) == [2, 36] and leaf.total.item() == 38


def test_neuron(run):
    result = run("--wrt w=0.5 x=2.0 b=-0.3 --steps", "y = torch.tanh(w * x + b)")
    steps = result.steps
    tanh = steps.steps[0]
    assert tanh.node == "TanhBackward0" and "1 − tanh²" in tanh.edges[0].formula
    expected = 1 - torch.tanh(torch.tensor(0.7)) ** 2
    torch.testing.assert_close(tanh.edges[0].local, expected)
    sums = {leaf.name: leaf.total for leaf in steps.leaves}
    torch.testing.assert_close(sums["w"], expected * 2)
    torch.testing.assert_close(sums["x"], expected * 0.5)
    torch.testing.assert_close(sums["b"], expected)
    assert result.grads["w"] == sums["w"]


# ---------------------------------------------------------------------------
# oracles on random compositions
# ---------------------------------------------------------------------------
UNARY = {
    "neg": "-{a}",
    "exp": "torch.exp(torch.tanh({a}))",
    "log": "torch.log({a} * {a} + 1)",
    "sqrt": "torch.sqrt({a} * {a} + 1)",
    "sin": "torch.sin({a})",
    "cos": "torch.cos({a})",
    "tanh": "torch.tanh({a})",
    "sigmoid": "torch.sigmoid({a})",
    "relu": "torch.relu({a})",
    "abs": "torch.abs({a})",
    "square": "{a} ** 2",
    "cube": "{a} ** 3",
    "scale": "2.5 * {a}",
    "shift": "{a} - 1.5",
}
BINARY = {
    "add": "{a} + {b}",
    "sub": "{a} - {b}",
    "mul": "{a} * {b}",
    "div": "{a} / ({b} * {b} + 1)",
    "pow": "({a} * {a} + 1) ** torch.tanh({b})",
}


@st.composite
def programs(draw):
    names = ["u", "v", "w"]
    lines = []
    for k in range(draw(st.integers(1, 7))):
        name = f"t{k}"
        if draw(st.booleans()):
            op = draw(st.sampled_from(sorted(UNARY)))
            lines.append(f"{name} = " + UNARY[op].format(a=draw(st.sampled_from(names))))
        else:
            op = draw(st.sampled_from(sorted(BINARY)))
            a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
            lines.append(f"{name} = " + BINARY[op].format(a=a, b=b))
        names.append(name)
    lines.append(f"out = {names[-1]} + 0 * (u + v + w)")  # every leaf is reached
    values = draw(st.lists(st.floats(-2, 2, allow_nan=False, width=32), min_size=3, max_size=3))
    return "\n".join(lines), values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_local_factors_and_path_sums_are_autograds(program):
    source, (u, v, w) = program
    result = grad(source, wrt=f"u={u} v={v} w={w}", dtype="float64", steps=True, namespace={})
    ns = result.tensors
    checked: list[str] = []
    exec_ns: dict = {"torch": torch}
    leaves = {
        n: torch.tensor(x, dtype=torch.float64, requires_grad=True)
        for n, x in zip("uvw", (u, v, w), strict=True)
    }
    exec_ns.update(leaves)
    exec(source, exec_ns)
    out = exec_ns["out"]
    assume(bool(torch.isfinite(out)))
    expected = torch.autograd.grad(out, list(leaves.values()), allow_unused=True, retain_graph=True)
    assume(all(g is None or bool(torch.isfinite(g)) for g in expected))
    # 1. the product of the local factors along each path, summed over paths, is autograd's grad
    sums = path_sums(result.steps)
    for name, g in zip("uvw", expected, strict=True):
        torch.testing.assert_close(
            torch.tensor(sums.get(name, 0.0), dtype=torch.float64), g, rtol=1e-9, atol=1e-12
        )
    # ... and each leaf's sum of contributions is its grad
    for leaf in result.steps.leaves:
        torch.testing.assert_close(leaf.total, result.grads[leaf.name])
    # 2. each local factor is autograd's d(node output)/d(that input), the other inputs held fixed:
    #    the cell's line evaluated again on independent copies of its inputs (an input used twice,
    #    u + u, has one edge each: their factors add up)
    by_name = {step.name: step for step in result.steps.steps}
    for line in source.splitlines():
        name, _, expr = line.partition(" = ")
        step = by_name.get(name)
        if step is None or not step.edges or any(e.to not in exec_ns for e in step.edges):
            continue  # a line of several nodes: its inner edges are checked by the path sums
        factors: dict[str, float] = {}
        for e in step.edges:
            factors[e.to] = factors.get(e.to, 0.0) + e.local.item()
        fresh = {n: exec_ns[n].detach().requires_grad_() for n in factors}
        value = eval(
            expr,
            {
                "torch": torch,
                **{n: v.detach() for n, v in exec_ns.items() if isinstance(v, torch.Tensor)},
                **fresh,
            },
        )
        partials = torch.autograd.grad(value, list(fresh.values()), allow_unused=True)
        for factor, local in zip(factors.values(), partials, strict=True):
            assume(local is not None and bool(torch.isfinite(local)))
            torch.testing.assert_close(
                torch.tensor(factor, dtype=torch.float64), local, rtol=1e-9, atol=1e-12
            )
            checked.append(name)
    assert ns.keys() == {"u", "v", "w"}


def test_no_gradient_arrived_the_node_gives_its_factor():
    # relu(x - 5) at x = 3 is flat: 0 arrives at the subtraction, whose own factor is still 1
    steps = grad("y = 2 * torch.relu(x - 5)", wrt="x=3", steps=True).steps
    relu = next(s for s in steps.steps if s.node == "ReluBackward0")
    assert relu.edges[0].local.item() == 0 and relu.edges[0].sent.item() == 0
    sub = next(s for s in steps.steps if s.node == "SubBackward0")
    assert sub.arriving.item() == 0 and sub.edges[0].local.item() == 1


def test_relu_kink_at_zero_is_called_out():
    steps = grad("y = torch.relu(x)", wrt="x=0.0", steps=True).steps
    assert steps.steps[0].kink and "kink" in steps.to_text()
    assert not grad("y = torch.relu(x)", wrt="x=1.0", steps=True).steps.steps[0].kink


@pytest.mark.parametrize(
    ("cell", "wrt"),
    [("y = torch.relu(x)", "x=-1"), ("y = torch.relu(x * 2 - 10)", "x=1"),
     ("y = torch.relu(x).sum()", "x=torch.tensor([-1.0, -2.0, 3.0])")],
)  # fmt: skip
def test_a_negative_input_is_not_called_a_kink(cell, wrt):
    # relu saves its output, 0 for every input <= 0: "at exactly 0 there is a kink" was said of -1
    steps = grad(cell, wrt=wrt, steps=True).steps
    assert not any(s.kink for s in steps.steps) and "kink" not in steps.to_text()


def test_a_kink_behind_another_node_is_found_from_what_it_saved():
    steps = grad("y = torch.relu(torch.tanh(x))", wrt="x=0.0", steps=True).steps
    assert [s.kink for s in steps.steps] == [True, False]


def test_one_paths_part_is_added_not_called_the_derivative():
    # the seed's y = 6x² + 2x + 4 read "dy/dx = 6 · 6 = 36 → x.grad", then "dy/dx = 36 + 2 = 38"
    steps = grad("y = 6 * x ** 2 + 2 * x + 4", wrt="x=3", steps=True, quiz=True)
    text = steps.steps.to_text()
    assert "dy/dx += 6 · 6 = 36 → x.grad" in text and "dy/dx += 1 · 2 = 2 → x.grad" in text, text
    assert "dy/dx = 36 + 2 = 38" in text and "dy/da = 1 · 6 = 6" in text  # (one path: =)
    asked = [q.text for q in steps.quiz.questions if "sends on dy/dx" in q.text]
    assert asked and all("dy/dx += arriving · local = ?" in q for q in asked), asked


def test_g_is_said_once_where_a_formula_uses_it():
    text = grad("y = (W @ v).sum()", wrt="W=torch.ones(2, 2) v=torch.ones(2)", steps=True).steps.to_text()
    assert "  a = W @ v\n" in text and "∂a/∂W = g ⊗ v" in text, text  # (the cell wrote @, not matmul)
    assert text.count("g in a formula: the gradient arriving at that step") == 1, text
    assert "g in a formula" not in grad("y = 3 * x ** 2", wrt="x=3", steps=True).steps.to_text()


def test_a_broadcast_input_gets_the_sum_and_says_so():
    steps = grad("y = (x * b).sum()", wrt="x=torch.tensor([1.0, 2.0, 3.0]) b=2.0", steps=True).steps
    assert "∂y/∂b = 6 (summed: b was broadcast to 3 elements) → b.grad" in steps.to_text()
    assert "broadcast" not in grad("y = (x * x).sum()", wrt="x=torch.ones(3)", steps=True).steps.to_text()


def test_a_minus_sign_reads_as_written():
    assert "  a = -x\n" in grad("y = torch.exp(-x)", wrt="x=1.0", steps=True).steps.to_text()


def test_a_factor_near_one_is_not_shown_as_one():
    # y = x·1.0001 twice: at 4 digits every factor read "1" and the grads "1 · 1 = 1.001"
    steps = grad("a = x * 1.0001\ny = a * 1.0001", wrt="x=1.0004", steps=True).steps
    text = steps.to_text()
    assert "∂y/∂a = 1.0001 " in text and "= 1.0001 = 1 " not in text, text
    assert "dy/da = 1 · 1.0001 = 1.0001" in text and "dy/dx = 1.0001 · 1.0001 = 1.0002" in text, text


def test_float_noise_still_reads_whole():  # (the table too: y = x·1.0001 read y = 2, dy/dx = 1)
    assert fmt.number(0.99999994) == "1" and fmt.number(18.0) == "18"
    assert fmt.number(1.0001) == "1.0001" and fmt.number(1234.5) == "1234.5"
    assert fmt.number(2.71828) == "2.718" and fmt.number(-3.0002) == "-3.0002"
    assert fmt.number(99999.5) == "99999.5" and fmt.number(-9999.8) == "-9999.8"  # (a carry: no 1e+05)
    assert fmt.number(1.00001) == "1.00001" and fmt.number(12.00004) == "12.00004"  # (float64's, too)


# ---------------------------------------------------------------------------
# tensors, formulas, routing
# ---------------------------------------------------------------------------
def test_matmul_shows_the_formula_not_a_number():
    source = "A = torch.ones(2, 3)\ny = (A @ W).sum()"
    steps = grad(source, wrt="W=torch.ones(3, 4)", steps=True).steps
    mm = next(s for s in steps.steps if s.node == "MmBackward0")
    (to_w,) = mm.edges
    assert to_w.formula == "Aᵀ @ g" and to_w.local is None and to_w.sent.shape == (3, 4)
    summ = steps.steps[0]
    assert summ.node == "SumBackward0" and summ.edges[0].formula.startswith("1")


def test_elementwise_local_factors_on_vectors():
    steps = grad("y = (x ** 2).sum()", wrt="x=torch.tensor([1.0, -2.0, 3.0])", steps=True).steps
    pow_ = next(s for s in steps.steps if s.node == "PowBackward0")
    torch.testing.assert_close(pow_.edges[0].local, torch.tensor([2.0, -4.0, 6.0]))


def test_linear_layer_and_cross_entropy_name_the_cells_tensors():
    source = (
        "import torch.nn.functional as F\n"
        "X = torch.ones(4, 3); t = torch.tensor([0, 1, 1, 0])\n"
        "W = torch.full((2, 3), 0.1, requires_grad=True); b = torch.zeros(2, requires_grad=True)\n"
        "z = F.linear(X, W, b)\nL = F.cross_entropy(z, t)\nL.backward()"
    )
    result = grad(source, steps=True, namespace={})
    steps = result.steps
    assert "z = b + X @ Wᵀ" in steps.forward
    kinds = [s.node for s in steps.steps]
    assert kinds[:3] == ["NllLossBackward0", "LogSoftmaxBackward0", "AddmmBackward0"]
    t_step = next(s for s in steps.steps if s.node == "TBackward0")
    assert t_step.routing and t_step.name == "Wᵀ"
    sums = {leaf.name: leaf.total for leaf in steps.leaves}
    torch.testing.assert_close(sums["W"], result.grads["W"])
    torch.testing.assert_close(sums["b"], result.grads["b"])


@pytest.mark.parametrize(
    ("cell", "node", "formula"),
    [
        ("y = torch.prod(x)", "ProdBackward0", "the product of the other elements"),
        ("y = torch.linalg.vector_norm(x)", "LinalgVectorNormBackward0", "x/‖x‖ = x/y"),
        ("y = torch.linalg.vector_norm(x, ord=1)", "LinalgVectorNormBackward0", None),  # not the 2-norm
        ("y = x.max()", "MaxBackward1", "1 at the largest element (shared among ties), 0 elsewhere"),
        ("y = torch.sort(x).values[0]", "SortBackward0", "g put back where each element came from"),
        ("y = F.mse_loss(x, torch.zeros(3))", "MseLossBackward0", "2·(x − [0, 0, 0])/n"),
        ("y = F.mse_loss(x, torch.zeros(3), reduction='sum')", "MseLossBackward0", "2·(x − [0, 0, 0])"),
        (
            "y = F.binary_cross_entropy_with_logits(x, t)",
            "BinaryCrossEntropyWithLogitsBackward0",
            "(σ(x) − t) / n",
        ),
        (
            "y = F.binary_cross_entropy_with_logits(x, t, pos_weight=t + 1)",
            "BinaryCrossEntropyWithLogitsBackward0",
            None,
        ),
    ],
)
def test_formulas_of_more_ops_hold_for_what_the_node_saved(cell, node, formula):
    """A formula only where it holds (the 2-norm, an unweighted loss, 1/n only for a mean);
    the numbers are autograd's either way."""
    ns = {"torch": torch, "F": torch.nn.functional, "t": torch.tensor([1.0, 0.0, 1.0])}
    result = grad(cell, wrt="x=torch.tensor([0.5, 2.0, 1.5])", steps=True, namespace=ns)
    step = next(s for s in result.steps.steps if s.node == node)
    assert step.edges[0].formula == formula
    sums = {leaf.name: leaf.total for leaf in result.steps.leaves}
    torch.testing.assert_close(sums["x"], result.grads["x"])


def test_an_unknown_op_shows_its_name_and_numbers_never_a_wrong_formula():
    steps = grad("y = torch.special.erfcx(x)", wrt="x=0.5", steps=True).steps
    (step,) = steps.steps
    assert step.edges[0].formula is None and step.edges[0].local is not None
    assert "∂y/∂x = -0.5127 " in steps.to_text() and "special_erfcx(x)" in step.forward


def test_custom_function_backward_runs_once():
    source = (
        "calls = []\n"
        "class Double(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        "        return 2 * x\n"
        "    @staticmethod\n"
        "    def backward(ctx, g):\n"
        "        calls.append(1)\n"
        "        return 2 * g\n"
        "y = (Double.apply(x) ** 2).sum()\ny.backward()"
    )
    ns: dict = {}
    steps = grad(source, wrt="x=torch.tensor([0.0, 3.0])", steps=True, namespace=ns).steps
    assert ns["calls"] == [1]  # the user's backward ran once, with the cell; never again for the steps
    assert any("Double" in s.node for s in steps.steps)
    assert "= Double.apply(x)" in steps.to_text()  # (as the cell wrote it: not "doublebackward(x)")


def test_custom_function_without_backward_gets_one_note():
    """A custom autograd.Function and no backward() in the cell: the grads are not computed (that
    would run the user's backward code), said once; not "the grads are of y.sum()" nor --steps'
    "the cell's own passes differentiated a gradient"."""
    source = (
        "class Exp(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, i):\n"
        "        r = i.exp()\n"
        "        ctx.save_for_backward(r)\n"
        "        return r\n"
        "    @staticmethod\n"
        "    def backward(ctx, g):\n"
        "        (r,) = ctx.saved_tensors\n"
        "        return g * r\n"
        "x = torch.tensor([0.0, 1.0], requires_grad=True)\ny = Exp.apply(x * 2)"
    )
    result = grad(source, steps=True, namespace={"torch": torch})
    (said,) = result.note_texts
    assert "your own Python code (Exp)" in said


# ---------------------------------------------------------------------------
# the contract: the cell's own pass, its graph and .grads
# ---------------------------------------------------------------------------
def test_cells_own_backward_is_traced_and_graph_stays_usable(shell):
    shell.run_cell("import torch\nx = torch.tensor(3.0, requires_grad=True)")
    outcome = shell.run_cell("%%grad --steps --out r -q\ny = 3 * x ** 2\ny.backward(retain_graph=True)")
    assert outcome.success
    r = shell.user_ns["r"]
    assert r.steps.steps[-1].edges[0].into_grad and r.steps.leaves[0].total.item() == 18
    assert shell.user_ns["x"].grad.item() == 18
    assert shell.run_cell("y.backward()\nx.grad.item()").result == 36  # our hooks are gone, graph kept
    # without a backward() in the cell: no .grad written on the user's x, and no "→ x.grad"
    shell.run_cell("x.grad = None")
    outcome = shell.run_cell("%%grad --steps --out r2 -q\nz = x ** 3")
    assert outcome.success and shell.user_ns["x"].grad is None
    r2 = shell.user_ns["r2"]
    assert not r2.steps.steps[0].edges[0].into_grad and "x.grad" not in r2.steps.to_text()
    assert shell.run_cell("z.backward()\nx.grad.item()").result == 27


def test_non_scalar_output_is_summed_step():
    steps = grad("y = x * 2", wrt="x=torch.tensor([1.0, 2.0])", steps=True).steps
    assert steps.output == "sum(y)" and steps.steps[0].node == "SumBackward0"


def test_nothing_to_differentiate_gets_a_note():
    result = grad("y = torch.ones(2)", steps=True)
    assert result.steps is None and result.output is None


# ---------------------------------------------------------------------------
# size and languages
# ---------------------------------------------------------------------------
def test_ten_thousand_nodes_fold_and_render_fast():
    source = "y = w\nfor _ in range(5000):\n    y = y * w + 0.001"
    result = grad(source, wrt="w=1.0001", steps=True)
    steps = result.steps
    assert len(steps.steps) == 10_000
    text, html = steps.to_text(), result._repr_html_()  # (how fast: benchmarks/run.py --only render)
    folds = [item for item in steps.shown() if isinstance(item, Fold)]
    assert folds and folds[0].count > 1000 and set(folds[0].block) == {"AddBackward0", "MulBackward0"}
    assert len(steps.shown()) < SHOWN + 5 and "×" in text and len(html) < 40_000
    (leaf,) = steps.leaves
    assert len(leaf.parts) == 5001  # w · w, then one product per loop
    torch.testing.assert_close(leaf.total, result.grads["w"])
    assert TRACE_LIMIT >= 10_000


def test_chinese():
    result = grad("y = 3 * x ** 2", wrt="x=3", steps=True, lang="zh")
    text = str(result)
    assert "链式法则" in text and "前向计算" in text and "dy/dx = 3 · 6 = 18 → x.grad" in text


def test_html_is_a_plain_table():
    html = (
        grad("y = 3 * x ** 2", wrt="x=3", steps=True)._repr_html_().replace("\xa0", " ").replace("\u2060", "")
    )
    assert "<table" in html and "color" not in html and "<svg" not in html and "∂a/∂x = 2·x = 6" in html


@pytest.mark.parametrize("flag", ["--graph", "--check", "--plot"])
def test_steps_with_other_flags(run, flag):
    result = run(f"--wrt x=3 --steps {flag}", "y = 3 * x ** 2")
    assert result.steps.leaves[0].total.item() == 18


def test_graph_edges_carry_the_same_numbers():
    result = grad("f = u**3 + v**2 + 4*u*v", wrt="u=3 v=4", steps=True, graph="simple")
    graph = result.graph
    labels = [label for label in graph.labels if label]
    assert "×27 → 27" in labels and "×4 → 16" in labels and "×12 → 12" in labels and "×8 → 8" in labels
    text, svg = graph.to_text(), graph.to_svg()
    assert "[×27 → 27] u (AccumulateGrad)" in text and "×4 → 16" in svg
    mul = [n for n in graph.nodes if n.op == "MulBackward0"]
    assert sorted(n.grad for n in mul) == ["1", "4"]  # the gradient that arrived at each node
    leaves = {n.name: n.grad for n in graph.nodes if n.kind == "leaf"}
    assert leaves == {"u": "43", "v": "20"}
    layout = graph.layout()
    assert len(layout.label_spots()) == len(labels)
    assert graph.to_png()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not grad("y = 3 * x ** 2", wrt="x=3", graph="simple").graph.labels  # only with --steps


def test_grad_states_are_told_apart_in_the_table():
    _, rows = grad("y = 3 * x ** 2", wrt="x=3 z=1").table()
    cells = {row[0]: row[3] for row in rows}
    assert cells == {"x": "18", "z": "None (no path to the output)", "y": "None (not a leaf: not kept)"}
    ns: dict = {}
    source = "x = torch.tensor(3.0, requires_grad=True)\nfor _ in range(3):\n    (3 * x ** 2).backward()"
    _, rows = grad(source, namespace=ns).table()
    assert rows[0][3] == "54 (added up over 3 backward() calls)"
    _, rows = grad("(3 * x ** 2).backward()", namespace=ns).table()
    assert rows[0][3] == "72 (this call's grad added to what .grad held before)"
    _, rows = grad("x.grad.zero_()\n(3 * x ** 2).backward()", namespace=ns).table()
    assert rows[0][3] == "18"  # zeroed first: one call's grad, nothing added up
    _, rows = grad("y = 0 * x", namespace=ns).table()
    assert rows[0][3] == "0"  # computed, and zero: a number, not None


# ---------------------------------------------------------------------------
# found by a red-team run in real kernels
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["steps", "check", "plot"])
def test_torch_func_and_inference_mode_cells_run_with_extras(flag):
    func_cell = (
        "x = torch.tensor([1., 2.], requires_grad=True)\ny = torch.func.grad(lambda t: (t ** 3).sum())(x)"
    )
    result = grad(func_cell, **{flag: True})
    torch.testing.assert_close(result.output, torch.tensor([3.0, 12.0]))
    inference = (
        "x = torch.tensor(3., requires_grad=True)\nwith torch.inference_mode():\n    y = x * 2\nz = x * 3"
    )
    result = grad(inference, **{flag: True})
    assert result.grads["x"].item() == 3
    if flag == "check":
        assert result.checks[0].ok  # the record treats inference tensors as constants


def test_users_backward_code_is_never_run_by_us(capsys):
    cell = (
        "class Sq(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x * x\n"
        "    @staticmethod\n    def backward(ctx, g):\n        print('bwd')\n        (x,) = ctx.saved_tensors\n"
        "        return 2 * x * g\n"
        "x = torch.tensor(3., requires_grad=True)\ny = Sq.apply(x)"
    )
    result = grad(cell, steps=True)
    assert "bwd" not in capsys.readouterr().out  # a plain run of the cell prints nothing
    assert any("runs your own Python code (Sq)" in n for n in result.note_texts)
    ns: dict = {}
    exec("import torch\nnet = torch.nn.Linear(2, 1)\ncalls = []\n"
         "net.register_full_backward_hook(lambda *a: calls.append('bwd'))", ns)  # fmt: skip
    result = grad("loss = net(torch.ones(2)).sum()", namespace=ns)
    assert ns["calls"] == [] and any("a module's backward hook" in n for n in result.note_texts)
    result = grad(cell + "\ny.backward()", steps=True)  # the cell's own backward: once, as plain
    assert capsys.readouterr().out.count("bwd") == 1 and result.grads["x"].item() == 6


def test_names_of_several_outputs_and_unrun_nodes():
    steps = grad("a, b = x.unbind()\ny = a * b", wrt="x=torch.tensor([2.0, 1.0])", steps=True).steps
    mul = steps.steps[0]
    assert mul.forward == "y = a · b"
    assert [(e.to, e.formula) for e in mul.edges] == [("a", "b"), ("b", "a")]
    steps = grad("y = torch.stack([a, b]).sum()", wrt="a=1.0 b=2.0", steps=True).steps
    assert "c = stack([a, b])" in steps.forward
    steps = grad("f = u**3 + v**2 + 4*u*v\nf.backward(inputs=[u])", wrt="u=3 v=4", steps=True).steps
    assert not any("Backward" in line for line in steps.forward)  # a node the pass skipped gets a name too
    assert grad("y = x * 1.0001", wrt="x=1.0", steps=True).steps.forward == ("y = 1.0001 · x",)


def test_a_hook_that_changes_a_grad_is_told():
    result = grad("x.register_hook(lambda g: g * 10)\ny = 3 * x ** 2\ny.backward()", wrt="x=3", steps=True)
    assert result.grads["x"].item() == 180 and result.steps.leaves[0].total.item() == 18
    assert result.steps.hooked == ("x",)
    (said,) = [n for n in result.note_texts if "register_hook" in n]  # (one note, not one per view)
    assert "changed a gradient on its way back" in said and "(x: 180)" in said and "d…" not in said


def test_nan_grad_is_not_a_change():
    result = grad("x = torch.tensor(-1., requires_grad=True)\ny = torch.sqrt(x)\ny.backward()")
    assert not any("went on to change" in n for n in result.note_texts)


# ---------------------------------------------------------------------------
# the cost follows what is shown (issue 25): a long pass makes only the steps it shows
# ---------------------------------------------------------------------------
LONG = "y = x\nfor i in range(450):\n    y = y * 1.0001 + 0.0001 * torch.sin(y)"  # 1,800 nodes


def test_a_long_pass_makes_only_the_steps_it_shows(monkeypatch):
    from torchgrad_magic.derive import steps as steps_module

    made: list[int] = []
    step = steps_module._Walk.step
    monkeypatch.setattr(steps_module._Walk, "step", lambda self, i: made.append(i) or step(self, i))
    result = grad(LONG + "\ny.backward()", wrt="x=0.5", steps=True)
    text, html = str(result), result._repr_html_().replace("\xa0", " ").replace("\u2060", "")
    assert len(result.steps.steps) == 1_800 and "× 444" in text and "× 444" in html
    assert len(set(made)) <= SHOWN + 2  # the first and last steps: the middle is folded from its kinds
    assert len(result.steps.forward) == 1_800 and len(made) <= 2 * SHOWN + 4


def test_a_long_pass_reads_as_its_steps_made_one_by_one():
    """The lazily made sequences are the tuple of their items: the same report as from tuples."""
    import dataclasses

    steps = grad(LONG, wrt="x=0.5", steps=True).steps  # %%grad's own pass: the graph is kept
    whole = dataclasses.replace(steps, steps=tuple(steps.steps), forward=tuple(steps.forward))
    assert whole.to_text() == steps.to_text() and whole.to_html() == steps.to_html()
    assert (
        steps.steps == whole.steps and steps.forward == whole.forward and steps.forward[-1] in steps.forward
    )
    assert steps.steps[-1] is steps.steps[len(steps.steps) - 1] and steps.steps[:2] == whole.steps[:2]
    assert [s.index for s in steps.steps[-3:]] == [1_798, 1_799, 1_800]
    # every step of the middle, made after the pass, is what the pass showed: path sums are exact
    sums = path_sums(steps)
    torch.testing.assert_close(torch.tensor(sums["x"], dtype=torch.float32), steps.leaves[0].total)


def test_the_middle_of_a_long_pass_is_caught_cheaply_and_completed_when_read(monkeypatch):
    """The hooks keep the middle's grads as they are; its local factors are worked out when a step
    is read: the same numbers as caught in full while the pass ran."""
    from torchgrad_magic.capture import tracer

    source = LONG + "\ny.backward()"
    cheap = grad(source, wrt="x=0.5", steps=True).steps
    monkeypatch.setattr(tracer, "EVERY", 10**6)  # every node caught in full, as before issue 25
    full = grad(source, wrt="x=0.5", steps=True).steps
    assert cheap.to_text() == full.to_text()
    for a, b in zip(cheap.steps, full.steps, strict=True):
        assert (a.node, a.name, a.forward, a.index) == (b.node, b.name, b.forward, b.index)
        torch.testing.assert_close(a.arriving, b.arriving)
        for e, f in zip(a.edges, b.edges, strict=True):
            assert (e.to, e.formula) == (f.to, f.formula)
            torch.testing.assert_close(e.local, f.local)
            torch.testing.assert_close(e.sent, f.sent)


def test_a_deep_model_folds_its_layers():
    """More layers than the report shows: the middle ones fold by their type (it raised before)."""
    ns: dict = {"torch": torch}
    exec(
        "torch.manual_seed(0)\nnet = torch.nn.Sequential(*[m for _ in range(20) for m in "
        "(torch.nn.Linear(4, 4), torch.nn.Tanh())])\nX = torch.randn(3, 4)",
        ns,
    )
    result = grad("loss = net(X).pow(2).mean()\nloss.backward()", steps=True, namespace=ns)
    folds = [item for item in result.steps.shown() if isinstance(item, Fold)]
    assert folds and set(folds[0].block) == {"Linear", "Tanh"} and folds[0].count > 3
    html = result._repr_html_().replace("\xa0", " ").replace("\u2060", "")
    assert "[Tanh, Linear] ×" in str(result) and "[Tanh, Linear] ×" in html and "net.39 (Tanh)" in html


def test_no_forward_expression_is_a_plain_name():
    """The forward listing counts a plainly named node's line without making it: no expression can
    be such a name (every template has an operator, a bracket or ᵀ besides its fields; a call, an
    index, a where and a node without a template have brackets)."""
    import re
    import string as strings

    from torchgrad_magic.derive.steps import _PLAIN_NAME, FORWARD, _Fields, _forward

    for template in FORWARD.values():
        literal = "".join(text for text, *_ in strings.Formatter().parse(template))
        assert re.search(r"[^A-Za-z0-9_]", literal), template
    assert not _PLAIN_NAME.fullmatch(_forward("FooBackward0", _Fields(), None, ["a"]))
    assert not _PLAIN_NAME.fullmatch(_forward("WhereBackward0", _Fields(), None, ["a", "b"]))


@pytest.mark.parametrize(
    "cell",
    [
        "y = torch.where(x > 0, x ** 2, -x).sum()",
        "a, b = x[:2].unbind()\ny = torch.softmax(torch.stack([a, b * 2]), dim=0)[0] + x.float().sum()",
        "m = x.detach().requires_grad_()\ny = (torch.sigmoid(m) * x + 4).sum()",
        "h = x.view(2, 2)\nh = h @ W + c\ny = torch.nn.functional.mse_loss(h, torch.zeros(2, 2))",
    ],
)
def test_steps_alone_note_the_calls_as_the_record_does(cell):
    """--steps alone notes the calls cheaply (capture/record.NodeCalls); with an extra that needs
    the record, the full one (Recorder) is made: the same steps either way."""
    ns = {"torch": torch, "W": torch.eye(2), "c": torch.tensor([0.5, -0.5])}
    point = "x=torch.tensor([1.0, -2.0, 3.0, 0.5])"
    alone = grad(cell, wrt=point, steps=True, namespace=dict(ns)).steps
    recorded = grad(cell, wrt=point, steps=True, check=True, namespace=dict(ns)).steps
    assert alone.to_text() == recorded.to_text() and alone.forward == recorded.forward


def test_a_sum_of_paths_reads_as_written():
    from torchgrad_magic import grad

    result = grad("y = x * torch.cos(x)", wrt={"x": 2.0}, steps=True)
    line = next(line for line in result.steps.to_text().splitlines() if "2 paths" in line)
    assert "+ -" not in line and " - " in line, line  # cos(2) - 2·sin(2): "-1.819 - 0.4161"


def test_a_variable_named_d_gets_partial_signs_not_dy_dd():
    """``dy/dd`` reads as a typo: where a name starts with d, the steps write ``∂y/∂d``."""
    result = grad("d = x * 2\ny = d ** 2\ny.backward()", wrt="x=3", steps=True)
    text = str(result)
    assert "dy/dd" not in text and "∂y/∂d = 1 · 12 = 12" in text and "dy/dx = 12 · 2 = 24" in text


def test_the_sum_over_paths_is_shown_only_where_a_grad_is_a_sum():
    """Each grad that came by one path is in the table already (with its '→ w.grad'): the list of
    sums only where some leaf's grad adds up several paths."""
    single = str(grad("y = torch.tanh(w * x + b)", wrt=["w=0.5", "x=2.0", "b=-0.3"], steps=True))
    assert "sum of what every path sent it" not in single and "→ w.grad" in single
    several = str(grad("y = x * x + x", wrt="x=3", steps=True))
    assert "sum of what every path sent it" in several and "dy/dx = 3 + 3 + 1 = 7 (3 paths" in several


def test_a_models_other_parameters_keep_their_names_under_wrt_one_of_them():
    """``--wrt net.0.weight`` on a model cell: the other parameters are named as without it
    (they were ``leaf(2,)``, and the Linear rule read ``∂loss/∂weight = gᵀ·leaf(2,)``, the bias)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    ns = {"torch": torch, "net": net, "data": torch.randn(4, 3)}
    text = grad(
        "loss = net(data).pow(2).mean()", wrt="net.0.weight", steps=True, namespace=ns
    ).steps.to_text()
    assert "a = net.0.bias + data @ net.0.weightᵀ" in text and "c = net.2.bias + b @ net.2.weightᵀ" in text
    assert "leaf(" not in text
    assert "∂loss/∂net.0.weight = gᵀ·data,  ∂loss/∂net.0.bias = Σ g  " in text, text  # (data needs no grad)
    # --wrt the last bias: the whole pass as backward() runs it (a pass to the bias alone wrote
    # "a = net.2.bias + b @ c" with b and c never defined)
    bias = grad("loss = net(data).pow(2).mean()", wrt="net.2.bias", steps=True, namespace=ns)
    assert (
        "b = tanh(a)" in bias.steps.to_text() and "c = net.2.bias + b @ net.2.weightᵀ" in bias.steps.to_text()
    )
    assert all(p.grad is None for p in net.parameters())  # (nothing stored: --wrt's own pass)


def test_made_up_names_skip_d():
    """Four unnamed results are a, b, c, e: a made-up ``d`` gave ``∂y/∂d`` beside ``dy/db`` (a name
    starting with d is written with ∂)."""
    steps = grad("y = torch.tanh(x) ** 2 + torch.log(1 + x)\ny.backward()", wrt="x=0.5", steps=True).steps
    text = steps.to_text()
    assert "(a, b, c, e: names made up here" in text and "dy/de = 1 · 1 = 1" in text


def test_trace_has_its_local_derivative():
    """(It read "∂c/∂a = ? (not explained: TraceBackward0)".)"""
    text = grad(
        "c = torch.trace(a)\nc.backward()", wrt="a=torch.tensor([[1., 2.], [3., 4.]])", steps=True
    ).steps
    assert "c = trace(a)" in text.to_text() and "∂c/∂a = I (1 on the diagonal, 0 elsewhere)" in text.to_text()


def test_a_folded_row_does_not_widen_the_node_column():
    """(Its 'steps 13–1188: [AddBackward0, ...] × 294' set the column's width: about 60 spaces.)"""
    cell = "y = x\nfor i in range(300):\n    y = y * 1.0001 + 0.0001 * torch.sin(y)\ny.backward()"
    lines = grad(cell, wrt="x=0.5", steps=True).steps.to_text().splitlines()
    (header,) = [line for line in lines if "backward node" in line]
    assert "backward node  undoes" in header
    assert any(line.lstrip().startswith("…     steps 13–") for line in lines)


def test_a_loss_layers_rule_names_its_target_and_n():
    torch.manual_seed(0)
    ns = {"torch": torch, "net": torch.nn.Linear(3, 4), "X": torch.randn(5, 3),
          "labels": torch.tensor([0, 1, 2, 3, 0]), "crit": torch.nn.CrossEntropyLoss(), "mse": torch.nn.MSELoss()}  # fmt: skip
    text = grad("loss = crit(net(X), labels)\nloss.backward()", steps=True, namespace=ns).steps.to_text()
    assert "(softmax(a) − onehot(labels))/n (n = 5)" in text, text  # (n: the samples)
    ns["goal"] = torch.zeros(5, 4)
    text = grad(
        "out = net(X)\nloss = mse(out, goal)\nloss.backward()", steps=True, namespace=ns
    ).steps.to_text()
    assert "∂loss/∂out = 2·(out − goal)/n (n = 20)" in text, text  # (n: the elements)


def test_a_loss_rule_follows_its_reduction_and_weights():
    torch.manual_seed(0)
    ns = {"torch": torch, "net": torch.nn.Linear(3, 1), "X": torch.randn(4, 3), "Y": torch.randn(4, 1)}
    ns["mse"] = torch.nn.MSELoss(reduction="sum")
    text = grad("loss = mse(net(X), Y)\nloss.backward()", steps=True, namespace=ns).steps.to_text()
    assert "∂loss/∂a = 2·(a − Y)  " in text and "(n =" not in text, text  # (a sum: no /n)
    ns["mse"] = torch.nn.MSELoss()
    text = grad(
        "loss = mse(net(X), torch.zeros(4, 1))\nloss.backward()", steps=True, namespace=ns
    ).steps.to_text()
    assert "2·(a − target)/n (n = 4)" in text and "[[" not in text.split("∂loss/∂a = ")[1][:20], text
    ns.update(net=torch.nn.Linear(3, 2), labels=torch.tensor([0, 1, 1, 0]))
    ns["ce"] = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0]))  # (its rule is not the plain one)
    text = grad("loss = ce(net(X), labels)\nloss.backward()", steps=True, namespace=ns).steps.to_text()
    assert "onehot" not in text and "NllLossBackward0" in text, text


def test_a_tensor_used_twice_adds_its_parts_where_it_sends_on():
    # a·a: "dy/da += 3" twice, then "dy/dx = 6 · 3": the 6 came from nowhere the table said
    text = grad("a = x * 3\ny = a * a", wrt="x=1.0", steps=True).steps.to_text()
    assert text.count("dy/da += 1 · 3 = 3") == 2 and "dy/dx = (3 + 3) · 3 = 18 → x.grad" in text, text


def test_a_tensor_named_g_keeps_its_name_and_the_gradient_is_g_bar():
    text = grad(
        "y = (W @ g).sum()", wrt="W=torch.ones(2, 2) g=torch.tensor([1.0, 2.0])", steps=True
    ).steps.to_text()
    assert "∂a/∂W = ḡ ⊗ g " in text and "∂a/∂g = Wᵀ @ ḡ " in text, text
    assert "ḡ in a formula: the gradient arriving" in text, text
    made_up = grad(
        "y = x * 2 * 3 * 4 * 5 * 6 * 7 * 8 * 9 * 10 * 11 * 12 * 13", wrt="x=1.0", steps=True
    ).steps.made_up
    assert len(made_up) == 11 and "f" in made_up and not {"d", "g", "n"} & set(made_up), made_up


def test_a_property_and_a_librarys_default_keyword_read_as_written():
    text = grad("y = (x @ W.T).sum() + torch.nn.functional.relu(x).sum()",
                wrt="W=torch.ones(2, 2) x=torch.tensor([1.0, 2.0])", steps=True).steps.to_text()  # fmt: skip
    assert "  a = W.T\n" in text and "relu(x)\n" in text and ".T(W)" not in text and "inplace" not in text, (
        text
    )


def test_a_constant_tensor_in_a_forward_line_has_the_tables_digits():
    ns = {"torch": torch, "goal": None}
    text = grad("y = ((x - torch.tensor([0.123456789, 2.0])) ** 2).sum()", wrt="x=[1.0, 1.0]", steps=True,
                namespace=ns).steps.to_text()  # fmt: skip
    assert "x − [0.1235, 2]" in text and "0.12345" not in text, text
