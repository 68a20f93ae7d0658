"""--graph: structure against a walk of grad_fn.next_functions, names, values, grads, big graphs."""

from __future__ import annotations

import io
import itertools
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch

from torchgrad_magic import grad
from torchgrad_magic.derive import graph as graph_module
from torchgrad_magic.render import graph as draw


def chain(steps: int, factor: float = 1.0001, shift: float = 0.1):
    """``y = y * factor + shift`` *steps* times from a leaf x, and its graph as built (unfolded:
    the engine's --graph folds such a loop into one box, see test_graph_loops.py)."""
    x = torch.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(steps):
        y = y * factor + shift
    return y, graph_module.build(y, "y", {id(x): "x"}, [x], {})


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
    mul_node, pow_node = result.graph.nodes[:2]
    # the saved input of x ** 2 is x itself: its name, not a value that could be anything
    assert pow_node.extra == ["exponent = 2", "self = x"]
    # 3 * (x ** 2) saves the factor 3; the other factor is not saved (None): left out, not "None"
    assert mul_node.extra == ["other = 3"]
    assert result.grads["x"].item() == 18
    assert "exponent" not in str(run("--wrt x=3 --graph", "y = 3 * x ** 2"))


def test_full_names_saved_tensors_and_never_says_none(run):
    g = run("--wrt u=3 v=4 --graph full", "f = u**3 + v**2 + 4*u*v").graph
    extras = {(n.op, tuple(n.extra)) for n in g.nodes if n.extra}
    assert ("PowBackward0", ("exponent = 3", "self = u")) in extras
    assert ("PowBackward0", ("exponent = 2", "self = v")) in extras
    assert ("MulBackward0", ("other = v", "self = 12")) in extras  # (4*u) * v: 4*u has no name
    assert ("MulBackward0", ("other = 4",)) in extras
    assert "None" not in g.to_text() and "None" not in g.to_svg()
    # a saved output (exp keeps its result) is unpacked as a new tensor: still shown by its name
    g = run("--wrt x=1 --graph full", "e = torch.exp(x)\ny = e * 2").graph
    assert ["result = e"] in [n.extra for n in g.nodes if n.op == "ExpBackward0"]


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
    code = "import sys\nfrom torchgrad_magic import grad\ngrad('y = x * 2', wrt='x=1', graph=True).graph.to_svg()\nassert 'graphviz' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PATH": "/nonexistent"}, timeout=120)


def test_big_graph_is_cut_and_stays_small():
    output, g = chain(5000)
    assert len(g.nodes) == 10_001 and (len(g.nodes), len(g.edges)) == walk(output)
    svg, text = draw.to_svg(g), g.to_text()
    assert "… 9921 more nodes" in svg and "… 9921 more nodes" in text
    assert len(svg) < 60_000 and len(text) < 20_000
    assert max(len(line) for line in text.splitlines()) < 120  # long chains stop indenting
    ET.fromstring(svg)


def test_module_parameters_go_in_the_module_box(run):
    run.ns["net"] = torch.nn.Linear(2, 1)
    result = run("--wrt inp=[1.0, 2.0] --graph", "out = net(inp)")
    leaves = [n for n in result.graph.nodes if n.kind == "leaf"]
    assert {n.name for n in leaves} == {"inp"}
    (box,) = [n for n in result.graph.nodes if n.kind == "module"]
    text = " ".join(box.lines())
    assert box.name.startswith("net") and "Linear" in text and "weight (1, 2)" in text and "bias (1,)" in text
    assert "grad" not in text  # --wrt inp: the parameters get no grads
    full = run("--wrt inp=[1.0, 2.0] --graph full", "out = net(inp)").graph
    names = {n.name for n in full.nodes if n.kind == "leaf"}
    assert names == {"inp", "net.weight", "net.bias"}  # unfolded: the parameters as the model names them


# ---------------------------------------------------------------------------
# self-contained images
# ---------------------------------------------------------------------------
SVG_NS = "{http://www.w3.org/2000/svg}"
TUTORIAL = ("f = u**3 + v**2 + 4*u*v", "u=3 v=4")


def tutorial_graph(full: bool = False):
    cell, wrt = TUTORIAL
    return grad(cell, wrt=wrt, graph="full" if full else True).graph


def test_svg_is_standalone():
    g = tutorial_graph()
    svg = g.to_svg()
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"  # xmlns set: an <img> or a file shows it
    # presentation attributes only: no CSS, no CSS variables, no classes a page could restyle
    assert "<style" not in svg and "style=" not in svg and "var(" not in svg and "class=" not in svg
    background = root[0]
    assert background.tag == f"{SVG_NS}rect" and background.get("fill") == "#ffffff"
    assert (background.get("width"), background.get("height")) == (root.get("width"), root.get("height"))
    texts = [el for el in root.iter(f"{SVG_NS}text")]
    assert texts and all(el.get("fill") in ("#111111", "#aa0000") for el in texts)  # dark on white
    # ids are unique per output (two graphs on one page never share an arrow marker) and resolve
    ids = [el.get("id") for el in root.iter() if el.get("id")]
    refs = set(re.findall(r"url\(#([^)]+)\)", svg))
    assert refs and refs <= set(ids)
    other = set(re.findall(r'id="([^"]+)"', g.to_svg()))
    assert not other & set(ids)


def test_png_draws_the_same_layout_without_pyplot():
    from PIL import Image

    g = tutorial_graph(full=True)
    png = g.to_png()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    lay = g.layout()
    assert image.size == (int(lay.width), int(lay.height))
    assert image.getextrema()[3] == (255, 255)  # opaque everywhere
    assert image.getpixel((1, 1)) == (255, 255, 255, 255)  # white background
    x0, y0, _, h = lay.boxes[0]
    assert image.getpixel((int(x0 + 3), int(y0 + h - 3)))[:3] == (0xD9, 0xF2, 0xD9)  # the output's box
    code = (
        "import sys\nfrom torchgrad_magic import grad\n"
        "g = grad('y = x * 2', wrt='x=1', graph=True).graph\n"
        "assert 'matplotlib' not in sys.modules\n"
        "assert g.to_png().startswith(b'\\x89PNG')\n"
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_mimebundle_shows_an_image_everywhere():
    g = tutorial_graph()
    bundle = g._repr_mimebundle_()
    assert set(bundle) == {"image/svg+xml", "image/png", "text/plain"}
    ET.fromstring(bundle["image/svg+xml"])
    assert bundle["image/png"].startswith(b"\x89PNG") and bundle["text/plain"] == g.to_text()
    only_svg = g._repr_mimebundle_(include={"image/svg+xml", "text/plain"})
    assert "image/png" not in only_svg and "image/svg+xml" in only_svg
    assert "image/svg+xml" not in g._repr_mimebundle_(exclude={"image/svg+xml"})


def test_the_report_draws_the_graph_derive_built():
    """derive/graph.py builds plain data; the report's graph is the same data with its pictures."""
    _, plain = chain(3)
    assert not hasattr(plain, "to_svg") and not hasattr(plain, "_repr_mimebundle_")
    shown = draw.drawn(plain)
    assert isinstance(shown, graph_module.Graph) and shown.nodes is plain.nodes
    assert shown.to_text() == plain.to_text() and draw.drawn(shown) is shown and draw.drawn(None) is None
    unique = re.compile(r"tgm-arrow-[0-9a-f]+")
    assert unique.sub("", shown.to_svg()) == unique.sub("", draw.to_svg(plain))
    result_graph = tutorial_graph()
    assert isinstance(result_graph, draw.DrawnGraph)
    assert isinstance(graph_module.without_grads(result_graph), draw.DrawnGraph)  # --quiz's graph


# ---------------------------------------------------------------------------
# the layout: no edge through a box, no crossings where none are needed
# ---------------------------------------------------------------------------
def segment_hits_box(p, q, box, margin=1.0) -> bool:
    """Whether segment p-q meets the box grown by *margin* (Liang-Barsky clipping)."""
    x, y, w, h = box
    left, right, top, bottom = x - margin, x + w + margin, y - margin, y + h + margin
    (x1, y1), (x2, y2) = p, q
    dx, dy = x2 - x1, y2 - y1
    lo, hi = 0.0, 1.0
    for step, room in ((-dx, x1 - left), (dx, right - x1), (-dy, y1 - top), (dy, bottom - y1)):
        if step == 0:
            if room < 0:
                return False
            continue
        r = room / step
        if step < 0:
            lo = max(lo, r)
        else:
            hi = min(hi, r)
        if lo > hi:
            return False
    return True


def segments_meet(p1, p2, q1, q2) -> bool:
    def orient(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return 0 if abs(v) < 1e-9 else (1 if v > 0 else -1)

    def on(a, b, c):
        return (
            min(a[0], b[0]) - 1e-9 <= c[0] <= max(a[0], b[0]) + 1e-9
            and min(a[1], b[1]) - 1e-9 <= c[1] <= max(a[1], b[1]) + 1e-9
        )

    o1, o2, o3, o4 = orient(p1, p2, q1), orient(p1, p2, q2), orient(q1, q2, p1), orient(q1, q2, p2)
    if o1 != o2 and o3 != o4:
        return True
    return any(
        o == 0 and on(a, b, c)
        for o, a, b, c in ((o1, p1, p2, q1), (o2, p1, p2, q2), (o3, q1, q2, p1), (o4, q1, q2, p2))
    )


def check_layout(g):
    """Every edge runs from its parent's bottom down to its child's top and passes no other box;
    boxes do not overlap. Returns the number of edge crossings."""
    lay = draw.layout(g)
    assert [(a, b) for a, b, _ in lay.edges] == [
        (a, b) for a, b in g.edges if a in lay.boxes and b in lay.boxes
    ]
    boxes = lay.boxes
    ids = sorted(boxes)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            (xa, ya, wa, ha), (xb, yb, wb, hb) = boxes[a], boxes[b]
            assert xa + wa <= xb or xb + wb <= xa or ya + ha <= yb or yb + hb <= ya, (a, b)
    for a, b, pts in lay.edges:
        xa, ya, wa, ha = boxes[a]
        xb, yb, wb, hb = boxes[b]
        assert pts[0][1] == ya + ha and xa < pts[0][0] < xa + wa  # leaves the parent's bottom
        assert pts[-1][1] == yb and xb < pts[-1][0] < xb + wb  # arrives at the child's top
        assert all(q[1] >= p[1] for p, q in itertools.pairwise(pts)), "edges go down, towards the leaves"
        for p, q in itertools.pairwise(pts):
            for other, box in boxes.items():
                if other not in (a, b):
                    assert not segment_hits_box(p, q, box), (a, b, other, p, q)
        for x, y in pts:
            assert 0 <= x <= lay.width and 0 <= y <= lay.height
    crossings = 0
    for i, (_, _, first) in enumerate(lay.edges):
        for _, _, second in lay.edges[i + 1 :]:
            crossings += sum(
                segments_meet(p1, p2, q1, q2)
                for p1, p2 in itertools.pairwise(first)
                for q1, q2 in itertools.pairwise(second)
            )
    return crossings


def test_tutorial_drawing_has_no_crossings():
    for full in (False, True):
        assert check_layout(tutorial_graph(full)) == 0


CELLS = {
    "first example": ("y = 3*x**2", "x=3"),
    "chain of 50 ops": ("y = x\nfor i in range(25):\n    y = y * 1.01 + 0.1", "x=1"),
    "diamond": ("a = x * 2\nb = a + 1\nc = a * 3\ny = b * c", "x=1"),
    "used twice": ("a = x * 2\ny = a * a + a", "x=1"),
    "polynomial": ("y = 6 * x ** 2 + 2 * x + 4", "x=3"),
    "three leaves": ("out = (w * inp).sum() + b * w.sum() + torch.sin(b)", "w=[1.0,2.0] inp=[3.0,4.0] b=1.0"),
    "long edges": ("z = x * y\nq = z.exp() * x + z * y.sin()\nr = q * q.cos() + z * 2 + x", "x=1.0 y=2.0"),
}


@pytest.mark.parametrize("name", CELLS)
def test_no_edge_passes_through_a_box(name):
    cell, wrt = CELLS[name]
    for mode in (True, "full"):
        g = grad(cell, wrt=wrt, graph=mode).graph
        crossings = check_layout(g)
        if name in ("first example", "chain of 50 ops", "diamond", "used twice", "polynomial"):
            assert crossings == 0, name


def test_straight_chain_and_leaves_at_the_bottom():
    _, g = chain(25, 1.01)  # CELLS["chain of 50 ops"], unfolded
    lay = draw.layout(g)
    assert len(g.nodes) == 51 and all(len(pts) == 2 and pts[0][0] == pts[1][0] for _, _, pts in lay.edges)
    tops = [lay.boxes[n.id][1] for n in g.nodes]
    assert tops == sorted(tops) and len(set(tops)) == 51  # output on top, x at the bottom
    g = grad(CELLS["three leaves"][0], wrt=CELLS["three leaves"][1], graph=True).graph
    lay = g.layout()
    bottom = max(y for _, y, _, _ in lay.boxes.values())
    assert all(lay.boxes[n.id][1] == bottom for n in g.nodes if n.kind == "leaf")


def test_big_graph_renders_fast():
    _, g = chain(5000)
    svg, text = draw.to_svg(g), g.to_text()  # (how fast: benchmarks/run.py --only render)
    assert svg.count("<g") < 400 and len(text.splitlines()) < 400  # only the first nodes are laid out
