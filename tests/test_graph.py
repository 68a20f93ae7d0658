"""--graph: structure against a walk of grad_fn.next_functions, names, values, grads, big graphs."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import torch

from torchgrad_magic import grad


def walk(output: torch.Tensor) -> tuple[int, int]:
    """Unique backward nodes and edges, independently of torchgrad_magic (torchviz's way)."""
    seen, edges, stack = set(), 0, [output.grad_fn]
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        for nxt, _ in fn.next_functions:
            if nxt is not None:
                edges += 1
                stack.append(nxt)
    return len(seen), edges


def test_first_example(run):
    result = run("--wrt x=3 --graph", "y = 3 * x ** 2")
    g = result.graph
    assert [(n.op, n.name) for n in g.nodes] == [
        ("MulBackward0", "y"),
        ("PowBackward0", None),
        ("AccumulateGrad", "x"),
    ]
    assert [n.kind for n in g.nodes] == ["output", "function", "leaf"]
    assert g.edges == [(0, 1), (1, 2)]
    assert (g.nodes[0].data, g.nodes[2].data, g.nodes[2].grad) == ("27", "3", "18")
    assert (len(g.nodes), len(g.edges)) == walk(result.output)
    text = str(result)
    assert "y (MulBackward0) · data 27\n└─ PowBackward0\n   └─ x (AccumulateGrad) · data 3 · grad 18" in text


def test_shared_subgraph_appears_once(run):
    result = run("--wrt u=3 v=4 --graph", "f = u**3 + v**2 + 4*u*v")
    g = result.graph
    (u,) = [n for n in g.nodes if n.name == "u"]
    (v,) = [n for n in g.nodes if n.name == "v"]
    assert sum(1 for _, b in g.edges if b == u.id) == 2
    assert sum(1 for _, b in g.edges if b == v.id) == 2
    assert (u.grad, v.grad) == ("43", "20")
    assert (len(g.nodes), len(g.edges)) == walk(result.output)
    assert "↑ u (shared, shown above)" in g.to_text()


def test_order_is_deterministic(run):
    first = run("--wrt u=3 v=4 --graph", "f = u**3 + v**2 + 4*u*v").graph
    second = run("--wrt u=3 v=4 --graph", "f = u**3 + v**2 + 4*u*v").graph
    assert first == second


def test_polynomial_and_vector_examples(run):
    poly = run("--wrt x=3 --graph", "y = 6 * x ** 2 + 2 * x + 4")
    assert poly.graph.nodes[0].op == "AddBackward0" and poly.graph.nodes[0].data == "64"
    assert (len(poly.graph.nodes), len(poly.graph.edges)) == walk(poly.output)
    vector = run("--wrt x=torch.linspace(-20, 20, 20) --graph", "Y = x ** 2")
    leaf = vector.graph.nodes[-1]
    assert leaf.name == "x" and leaf.grad.startswith("[-40")


def test_intermediates_with_retain_grad(run):
    result = run("--wrt x=3 --graph --retain-grad", "z = 2 * x\ny = z ** 2")
    names = {n.name: n for n in result.graph.nodes}
    assert names["z"].kind == "named" and names["z"].grad == "12" and names["z"].data == "6"
    assert names["y"].grad == "1" and names["x"].grad == "24"
    plain = run("--wrt x=3 --graph", "z = 2 * x\ny = z ** 2")
    assert {n.name: n.grad for n in plain.graph.nodes}["z"] is None


def test_full_shows_saved_values(run):
    result = run("--wrt x=3 --graph full", "y = 3 * x ** 2")
    pow_node = result.graph.nodes[1]
    assert "exponent=2" in pow_node.extra and "self=3" in pow_node.extra
    assert result.grads["x"].item() == 18
    assert "exponent" not in str(run("--wrt x=3 --graph", "y = 3 * x ** 2"))


def test_graph_when_the_cell_called_backward(run):
    result = run("--graph full", "x = torch.tensor(3.0, requires_grad=True)\ny = 3 * x ** 2\ny.backward()")
    assert result.graph.nodes[2].grad == "18"
    assert any("freed by backward()" in e for e in result.graph.nodes[1].extra)


def test_svg_needs_no_graphviz_and_is_valid(run):
    result = run("--wrt u=3 v=4 --graph", "f = u**3 + v**2 + 4*u*v")
    svg = result.graph.to_svg()
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    texts = [el.text for el in root.iter() if el.tag.endswith("text")]
    assert "u (AccumulateGrad)" in texts and "f (AddBackward0)" in texts and "grad 43" in texts
    assert svg in result._repr_html_()
    code = "import sys\nfrom torchgrad_magic import grad\ngrad('y = x * 2', wrt='x=1', graph=True).graph.to_svg()\nassert 'graphviz' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PATH": "/nonexistent"}, timeout=120)


def test_big_graph_is_cut_and_stays_small():
    cell = "y = x\nfor i in range(5000):\n    y = y * 1.0001 + 0.1"
    result = grad(cell, wrt="x=1.0", graph=True)
    g = result.graph
    assert len(g.nodes) == 10_001 and (len(g.nodes), len(g.edges)) == walk(result.output)
    svg, text = g.to_svg(), g.to_text()
    assert "… 9921 more nodes" in svg and "… 9921 more nodes" in text
    assert len(svg) < 60_000 and len(text) < 20_000
    assert max(len(line) for line in text.splitlines()) < 120  # long chains stop indenting
    ET.fromstring(svg)


def test_module_parameters_are_unnamed_leaves(run):
    run.ns["net"] = torch.nn.Linear(2, 1)
    result = run("--wrt inp=[1.0, 2.0] --graph", "out = net(inp)")
    leaves = [n for n in result.graph.nodes if n.kind == "leaf"]
    assert {n.name for n in leaves} == {"inp", "Parameter (1, 2)", "Parameter (1,)"}
    assert all(n.grad is None for n in leaves if n.name != "inp")
