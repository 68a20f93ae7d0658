"""--graph on a model: module calls tracked with PyTorch's global hooks, folded into boxes."""

from __future__ import annotations

import contextlib
import gc
import io
import itertools
import time
import weakref
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from test_graph import check_layout
from torch import nn

from torchgrad_magic.capture import modules
from torchgrad_magic.capture.observe import tensor_names
from torchgrad_magic.derive import graph
from torchgrad_magic.derive import layers as module_layers
from torchgrad_magic.derive.graph import Box
from torchgrad_magic.messages import using
from torchgrad_magic.render import graph as draw

BUILD = Path(__file__).resolve().parents[1] / "build"


def traced(ns: dict, cell, grads: bool = False):
    """Run *cell* (a function of nothing, returning the output) under a tracker, as the engine
    does: owners first, then the graph, then the fold. Returns (output, owners, built graph)."""
    with modules.ModuleTracker() as tracker:
        out = cell()
    if grads:
        out.backward(retain_graph=True)
    owners = module_layers.owner_of_nodes(tracker.calls, module_layers.module_names(ns))
    names = tensor_names(ns)
    params = [p for v in ns.values() if isinstance(v, nn.Module) for p in v.parameters()]
    built = graph.build(out, "loss", names, [], {id(p): p.grad for p in params} if grads else {})
    tracker.clear()
    return out, owners, built


def boxes(g: graph.Graph) -> list[Box]:
    return [n for n in g.nodes if isinstance(n, Box)]


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))


class Blocks(nn.Module):
    """12 identical blocks applied in a loop, then a head."""

    def __init__(self, count: int = 12, width: int = 8) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(count))
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def blocks_graph(depth=None):
    torch.manual_seed(0)
    model, data = Blocks(), torch.randn(16, 8)
    ns = {"model": model, "data": data}
    _, owners, built = traced(ns, lambda: model(data).pow(2).mean())
    return built, module_layers.fold_graph(built, owners, depth)


# ---------------------------------------------------------------------------
# hooks: public ones, gone afterwards, outputs untouched
# ---------------------------------------------------------------------------
def global_module_hooks() -> dict[str, int]:
    """How many global module hooks PyTorch holds: reads torch.nn.modules.module's private
    dicts (the only way to see them), so a change in PyTorch shows up here and nowhere else."""
    from torch.nn.modules import module as m

    names = [
        "_global_forward_pre_hooks",
        "_global_forward_hooks",
        "_global_forward_hooks_with_kwargs",
        "_global_forward_hooks_always_called",
    ]
    missing = [n for n in names if not hasattr(m, n)]
    assert not missing, f"PyTorch no longer has {missing}: update this check of the global hooks"
    counts = {n: len(getattr(m, n)) for n in names}
    counts["_has_any_global_hook"] = bool(m._has_any_global_hook())  # torch.compile warns while true
    return counts


def test_hooks_are_removed_after_the_block_and_after_an_exception():
    before = global_module_hooks()
    net = mlp()
    with modules.ModuleTracker() as tracker:
        inside = global_module_hooks()
        net(torch.randn(2, 8))
    assert inside["_global_forward_pre_hooks"] == before["_global_forward_pre_hooks"] + 1
    assert inside["_global_forward_hooks"] == before["_global_forward_hooks"] + 1
    assert global_module_hooks() == before, "the tracker left a global module hook behind"
    assert [c.kind for c in tracker.calls] == ["Linear", "Tanh", "Linear", "Sequential"]
    with pytest.raises(RuntimeError, match="mat1 and mat2"), modules.ModuleTracker():
        net(torch.randn(2, 5))  # wrong width: the first Linear raises
    assert global_module_hooks() == before, "the tracker left a global module hook behind after an exception"


def test_an_exception_caught_in_the_cell_keeps_the_record_straight():
    net = mlp()
    with modules.ModuleTracker() as tracker:
        with contextlib.suppress(RuntimeError):
            net(torch.randn(2, 5))
        out = net(torch.randn(2, 8))
    assert [c.kind for c in tracker.calls] == ["Linear", "Tanh", "Linear", "Sequential"]
    outer = tracker.calls[-1]
    assert outer.parent is None and all(c.parent is outer for c in tracker.calls[:-1])
    assert out.grad_fn in outer.outputs


def test_outputs_and_grads_are_bit_identical_with_and_without_the_tracker():
    def once(track: bool):
        torch.manual_seed(1)
        layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64)  # dropout on
        net = nn.Sequential(nn.Linear(32, 32), nn.ReLU(inplace=True), layer)
        x = torch.randn(5, 3, 32)
        if track:
            with modules.ModuleTracker():
                out = net(x)
        else:
            out = net(x)
        out.pow(2).mean().backward()
        return out.detach(), [p.grad for p in net.parameters()]

    plain, tracked = once(False), once(True)
    assert torch.equal(plain[0], tracked[0])
    assert all(torch.equal(a, b) for a, b in zip(plain[1], tracked[1], strict=True))


def test_records_are_dropped_with_clear():
    net = nn.Linear(3, 3)
    owner = weakref.ref(net)
    with modules.ModuleTracker() as tracker:
        out = net(torch.randn(2, 3)).sum()
    owners = module_layers.owner_of_nodes(tracker.calls, module_layers.module_names({"net": net}))
    built = graph.build(out, "out", {}, [], {})
    folded = module_layers.fold_graph(built, owners)
    assert [b.name for b in boxes(folded)] == ["net"]
    node = weakref.ref(out)
    tracker.clear()
    del owners, out, net, built
    gc.collect()
    assert owner() is None and node() is None  # the folded graph holds neither
    assert tracker.calls == []
    assert folded.to_text()


# ---------------------------------------------------------------------------
# names and owners
# ---------------------------------------------------------------------------
def test_module_names_first_name_wins():
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.Sequential(nn.Tanh(), shared))
    names = module_layers.module_names(
        {"net": net, "alias": shared, "_hidden": nn.ReLU(), "x": torch.ones(1)}
    )
    assert names[id(net)] == "net" and names[id(net[1][0])] == "net.1.0"
    assert names[id(shared)] == "net.0"  # reached first as net.0
    assert len(names) == 4


def test_each_node_belongs_to_the_innermost_call():
    net = mlp()
    data, target = torch.randn(16, 8), torch.randn(16, 1)
    _, owners, built = traced(
        {"net": net, "data": data, "target": target}, lambda: nn.functional.mse_loss(net(data), target)
    )
    owned = {n.op: owners.get(built.sources[n.id]) for n in built.nodes if n.kind != "leaf"}
    assert owned == {
        "MseLossBackward0": None,  # the cell's own op
        "AddmmBackward0": "net.0",  # (two of them: the last one seen is the first layer's)
        "TBackward0": "net.0",
        "TanhBackward0": "net.1",
    }
    params = {n.name: owners.get(built.sources[n.id]) for n in built.nodes if n.kind == "leaf"}
    assert params == {
        "net.0.weight": "net.0",
        "net.0.bias": "net.0",
        "net.2.weight": "net.2",
        "net.2.bias": "net.2",
    }
    assert owners.kinds == {"net": "Sequential", "net.0": "Linear", "net.1": "Tanh", "net.2": "Linear"}
    assert owners.parents == {"net": None, "net.0": "net", "net.1": "net", "net.2": "net"}


# ---------------------------------------------------------------------------
# folding
# ---------------------------------------------------------------------------
def test_mlp_folds_one_box_per_layer_in_forward_order():
    net = mlp()
    data, target = torch.randn(16, 8), torch.randn(16, 1)
    ns = {"net": net, "data": data, "target": target}
    _, owners, built = traced(ns, lambda: nn.functional.mse_loss(net(data), target), grads=True)
    g = module_layers.fold_graph(built, owners)
    assert [(n.kind, n.op, n.name) for n in g.nodes] == [
        ("output", "MseLossBackward0", "loss"),
        ("module", "Linear", "net.2"),
        ("module", "Tanh", "net.1"),
        ("module", "Linear", "net.0"),
    ]
    assert g.edges == [(0, 1), (1, 2), (2, 3)]
    first = g.nodes[3]
    assert first.lines()[0] == "net.0 (Linear)" and first.lines()[1] == "2 ops: T, Addmm"
    weight, bias = first.lines()[2:]
    assert weight.startswith("weight (32, 8) · grad [") and bias.startswith("bias (32,) · grad [")
    assert g.nodes[2].lines() == ["net.1 (Tanh)", "1 op: Tanh"]
    assert sorted(i for b in boxes(g) for i in b.members) == sorted(
        n.id for n in built.nodes if n.kind != "output"
    )
    assert check_layout(g) == 0
    text = g.to_text()
    assert "net.0 (Linear) · 2 ops: T, Addmm · weight (32, 8) · grad [" in text
    ET.fromstring(draw.to_svg(g))
    BUILD.mkdir(exist_ok=True)
    (BUILD / "fold_mlp.png").write_bytes(draw.to_png(g))


def test_the_output_and_named_tensors_inside_a_box_are_listed():
    net = mlp()
    ns = {"net": net}
    with modules.ModuleTracker() as tracker:
        ns["h"] = net[0](torch.ones(2, 8))  # layers called one by one, the hidden layer named
        out = net[1](ns["h"])
    owners = module_layers.owner_of_nodes(tracker.calls, module_layers.module_names(ns))
    built = graph.build(out, "out", tensor_names(ns) | {id(out): "out"}, [ns["h"], out], {})
    g = module_layers.fold_graph(built, owners)
    assert [(n.kind, n.name) for n in g.nodes] == [("module", "net.1"), ("module", "net.0")]
    assert g.nodes[0].lines() == ["net.1 (Tanh)", f"→ out = {built.nodes[0].data}", "1 op: Tanh"]
    assert g.nodes[1].lines()[1] == f"→ h = {built.nodes[1].data}"


def test_twelve_blocks_fold_into_one_box():
    _, g = blocks_graph()
    assert [(n.kind, n.name) for n in g.nodes] == [
        ("output", "loss"),
        ("function", None),  # pow
        ("module", "model.head"),
        ("module", "model.blocks.0–11"),
    ]
    run = g.nodes[3]
    assert run.repeat == 12 and run.calls == [f"model.blocks.{i}" for i in range(12)]
    assert run.lines() == [
        "model.blocks.0–11 (Sequential) × 12",
        "each: 3 ops: T, Addmm, Relu",
        "0.weight (8, 8)",
        "0.bias (8,)",
    ]
    assert len(run.members) == 12 * 5
    assert check_layout(g) == 0
    BUILD.mkdir(exist_ok=True)
    (BUILD / "fold_blocks.png").write_bytes(draw.to_png(g))


def test_depth_two_shows_the_inner_modules_and_depth_zero_the_model():
    _, g = blocks_graph(2)
    names = [b.name for b in boxes(g)]
    assert names[0] == "model.head" and len(names) == 25
    assert names[1:5] == ["model.blocks.11.1", "model.blocks.11.0", "model.blocks.10.1", "model.blocks.10.0"]
    assert {b.op for b in boxes(g)} == {"Linear", "ReLU"}
    assert check_layout(g) == 0
    _, g = blocks_graph(0)
    assert [n.name for n in g.nodes] == ["loss", None, "model"]
    assert g.nodes[2].lines()[:3] == ["model (Blocks)", "38 ops: T, Addmm, Relu", "blocks.0.0.weight (8, 8)"]
    assert g.nodes[2].lines()[-1] == "… 21 more parameters"


def test_full_is_the_graph_as_built():
    built, g = blocks_graph("full")
    assert g is built
    torch.manual_seed(0)
    model, data = Blocks(), torch.randn(16, 8)
    out = model(data).pow(2).mean()
    plain = graph.build(out, "loss", tensor_names({"model": model}), [], {})
    assert built == plain  # the tracker changes nothing in the graph
    assert module_layers.fold_graph(built, module_layers.NodeOwners()) is built


def test_transformer_encoder_layer_folds_into_one_box():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4)
    model = nn.Sequential(layer)
    x = torch.randn(5, 3, 32)
    _, owners, built = traced({"model": model, "x": x}, lambda: model(x).pow(2).mean())
    g = module_layers.fold_graph(built, owners)
    assert [(n.kind, n.name) for n in g.nodes] == [
        ("output", "loss"),
        ("function", None),
        ("module", "model.0"),
    ]
    box = g.nodes[2]
    assert box.op == "TransformerEncoderLayer" and len(box.members) == len(built.nodes) - 2
    assert box.lines()[-1] == "… 7 more parameters"
    assert check_layout(g) == 0
    # the layer as the variable: depth 0 is one box; depth 1 its parts, its own ops between them
    _, owners, built = traced({"layer": layer, "x": x}, lambda: layer(x).pow(2).mean())
    assert [n.name for n in boxes(module_layers.fold_graph(built, owners, 0))] == ["layer"]
    g = module_layers.fold_graph(built, owners)
    parts = {b.name: b.op for b in boxes(g)}
    assert parts == {
        "layer.self_attn": "MultiheadAttention",
        "layer.dropout1": "Dropout",
        "layer.norm1": "LayerNorm",
        "layer.linear1": "Linear",
        "layer.dropout": "Dropout",
        "layer.linear2": "Linear",
        "layer.dropout2": "Dropout",
        "layer.norm2": "LayerNorm",
    }
    loose = sorted(n.op for n in g.nodes if not isinstance(n, Box))
    assert loose == ["AddBackward0", "AddBackward0", "MeanBackward0", "PowBackward0", "ReluBackward0"]
    assert check_layout(g) == 0


def test_a_module_called_in_a_loop_is_a_box_per_call_and_a_chain_folds():
    torch.manual_seed(0)
    cell = nn.Linear(4, 4)
    h = torch.randn(2, 4)

    def loop(squash: bool):
        y = h
        for _ in range(5):
            y = cell(y)
            y = torch.tanh(y) if squash else y
        return y.sum()

    _, owners, built = traced({"cell": cell, "h": h}, lambda: loop(True))
    g = module_layers.fold_graph(built, owners)
    assert [b.name for b in boxes(g)] == ["cell #5", "cell #4", "cell #3", "cell #2", "cell #1"]
    leaves = [n.name for n in g.nodes if n.kind == "leaf"]
    assert sorted(leaves) == ["cell.bias", "cell.weight"]  # used by every call: outside the boxes
    assert check_layout(g) == 0
    _, owners, built = traced({"cell": cell, "h": h}, lambda: loop(False))
    g = module_layers.fold_graph(built, owners)
    assert [n.lines()[0] for n in boxes(g)] == ["cell (Linear) × 5"]
    assert check_layout(g) == 0


def test_tied_weights_and_leaf_inputs_stay_outside():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.mid = nn.Linear(4, 4)

        def forward(self, i: torch.Tensor) -> torch.Tensor:
            return self.mid(self.emb(i)) @ self.emb.weight.t()

    tied = Tied()
    _, owners, built = traced({"tied": tied}, lambda: tied(torch.tensor([1, 2])).sum())
    g = module_layers.fold_graph(built, owners)
    assert [b.name for b in boxes(g)] == ["tied.mid", "tied.emb"]
    assert [n.name for n in g.nodes if n.kind == "leaf"] == ["tied.emb.weight"]
    assert check_layout(g) == 0
    lin, inp = nn.Linear(3, 2), torch.randn(3, requires_grad=True)
    _, owners, built = traced({"lin": lin, "inp": inp}, lambda: lin(inp).sum())
    g = module_layers.fold_graph(built, owners)
    assert [(n.kind, n.name) for n in g.nodes] == [("output", "loss"), ("module", "lin"), ("leaf", "inp")]


def test_a_parameter_handed_to_an_inner_call_stays_in_its_module():
    class Scale(nn.Module):
        def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return x * s

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.scale, self.mul = nn.Linear(3, 3), nn.Parameter(torch.ones(3)), Scale()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mul(self.lin(x), self.scale)

    m = Outer()
    _, owners, built = traced({"m": m}, lambda: m(torch.randn(2, 3)).sum())
    g = module_layers.fold_graph(built, owners, 0)
    assert [(n.kind, n.name) for n in g.nodes] == [("output", "loss"), ("module", "m")]
    assert g.nodes[1].lines()[2:] == ["scale (3,)", "lin.weight (3, 3)", "lin.bias (3,)"]
    g = module_layers.fold_graph(built, owners)  # m.mul does not own m.scale: a leaf of its own at depth 1
    assert [n.name for n in g.nodes if n.kind == "leaf"] == ["m.scale"]


def test_unnamed_parameters_get_their_model_names_and_anonymous_modules_their_type():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with modules.ModuleTracker() as tracker:
        out = nn.Linear(3, 1)(net(torch.randn(2, 3))).sum()  # a module no variable holds
    owners = module_layers.owner_of_nodes(tracker.calls, module_layers.module_names({"net": net}))
    g = module_layers.fold_graph(graph.build(out, "out", {}, [], {}), owners)  # no tensor names at all
    assert [b.lines() for b in boxes(g)] == [
        ["Linear", "2 ops: T, Addmm", "weight (1, 3)", "bias (1,)"],
        ["net.1 (ReLU)", "1 op: Relu"],
        ["net.0 (Linear)", "2 ops: T, Addmm", "weight (3, 3)", "bias (3,)"],
    ]


def test_names_alone_give_the_same_fold():
    torch.manual_seed(0)
    model, data = Blocks(), torch.randn(16, 8)
    _, owners, built = traced({"model": model}, lambda: model(data).pow(2).mean())
    by_node = {gid: owners[src] for gid, src in built.sources.items() if src in owners}
    for depth in (0, 1, 2):
        with_parents = graph.fold(built, by_node, owners.kinds, depth, owners.parents)
        assert graph.fold(built, by_node, owners.kinds, depth) == with_parents


def _written_out_mlp(pairs: int, unit=(nn.Tanh,)) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(pairs):
        layers += [nn.Linear(16, 16), *(kind() for kind in unit)]
    return nn.Sequential(*layers, nn.Linear(16, 1))


def test_an_mlp_written_out_layer_by_layer_folds_its_repeated_pairs():
    """241 modules, Linear then Tanh 120 times: one box for the 120 pairs (drawn at once, where
    the 241 boxes took seconds to draw), the last Linear apart."""
    net = _written_out_mlp(120)
    data = torch.randn(8, 16)
    _, owners, built = traced({"net": net, "data": data}, lambda: net(data).pow(2).mean(), grads=True)
    g = module_layers.fold_graph(built, owners)
    assert [b.lines()[0] for b in boxes(g)] == ["net.240 (Linear)", "net.0–239 (Linear, Tanh) × 120"]
    run = boxes(g)[1]
    assert run.lines()[1:] == ["each: 3 ops: T, Addmm, Tanh", "weight (16, 16)", "bias (16,)"]
    assert run.calls == [f"net.{i}" for i in range(240)] and run.repeat == 120
    assert len(run.members) == 240 * 3 // 2 + 2 * 120  # (3 ops and 2 parameters a pair)
    assert len(g.nodes) == 4 and check_layout(g) == 0  # (loss, pow, the two boxes)
    assert "net.0–239 (Linear, Tanh) × 120 · each: 3 ops: T, Addmm, Tanh" in g.to_text()
    ET.fromstring(draw.to_svg(g))
    BUILD.mkdir(exist_ok=True)
    (BUILD / "fold_pairs.png").write_bytes(draw.to_png(g))


def test_units_of_three_fold_and_short_runs_stay_drawn_out():
    net = _written_out_mlp(4, unit=(lambda: nn.LayerNorm(16), nn.ReLU))
    _, owners, built = traced({"net": net}, lambda: net(torch.randn(8, 16)).sum())
    g = module_layers.fold_graph(built, owners)
    assert [b.lines()[0] for b in boxes(g)] == ["net.12 (Linear)", "net.0–11 (Linear, LayerNorm, ReLU) × 4"]
    params = boxes(g)[1].lines()[2:]
    assert params == ["0.weight (16, 16)", "0.bias (16,)", "1.weight (16,)", "1.bias (16,)"]
    assert check_layout(g) == 0
    net = _written_out_mlp(2)  # two pairs: fewer than MIN_RUN units, each layer its own box
    _, owners, built = traced({"net": net}, lambda: net(torch.randn(8, 16)).sum())
    g = module_layers.fold_graph(built, owners)
    assert [b.name for b in boxes(g)] == ["net.4", "net.3", "net.2", "net.1", "net.0"]


def test_chinese_words():
    net = mlp()
    with using("zh"):  # the graph is built in Chinese: its boxes' words come from the catalogue
        _, owners, built = traced({"net": net}, lambda: net(torch.ones(1, 8)).sum())
        g = module_layers.fold_graph(built, owners)
    assert built.language == g.language == "zh"
    assert g.nodes[1].lines()[1] == "2 个运算：T, Addmm"
    assert "…… 另有 2 个节点" in g.to_text(limit=2)  # shown after using() ended: still Chinese
    assert not hasattr(graph, "WORDS")  # one catalogue: messages.MESSAGES


def test_steps_labels_survive_on_edges_that_stay_single():
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x)

    two, inp = Two(), torch.ones(3, requires_grad=True)
    ns = {"two": two, "inp": inp}
    _, owners, built = traced(ns, lambda: two(inp * 2).sum())
    labels = [f"e{k}" for k in range(len(built.edges))]
    labelled = graph.Graph(built.nodes, built.edges, labels, built.sources)
    g = module_layers.fold_graph(labelled, owners)  # two.a and two.b, each reading inp * 2 once
    assert [b.name for b in boxes(g)] == ["two.a", "two.b"]
    assert all(label is not None for label in g.labels) and len(g.labels) == len(g.edges)
    g = module_layers.fold_graph(labelled, owners, 0)  # one box: its two edges to inp * 2 are one now
    assert [(n.name, n.op) for n in g.nodes] == [
        ("loss", "SumBackward0"),
        ("two", "Two"),
        (None, "MulBackward0"),
        ("inp", "AccumulateGrad"),
    ]
    assert g.edges == [(0, 1), (1, 2), (2, 3)] and g.labels == ["e0", None, labels[-1]]
    assert check_layout(g) == 0


# ---------------------------------------------------------------------------
# cost
# ---------------------------------------------------------------------------
def test_tracking_and_folding_a_10m_parameter_mlp_is_cheap():
    torch.manual_seed(0)
    sizes = [1024, 2048, 2048, 2048, 10]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*layers[:-1])
    assert sum(p.numel() for p in net.parameters()) > 10_000_000
    x, y = torch.randn(32, 1024), torch.randn(32, 10)

    def plain():
        net.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(net(x), y)
        loss.backward()

    def tracked():
        net.zero_grad(set_to_none=True)
        with modules.ModuleTracker() as tracker:
            loss = nn.functional.mse_loss(net(x), y)
        loss.backward()
        owners = module_layers.owner_of_nodes(tracker.calls, module_layers.module_names({"net": net}))
        folded = module_layers.fold_graph(graph.build(loss, "loss", {}, [], {}), owners)
        tracker.clear()
        return folded

    assert len(boxes(tracked())) == 7
    plain()  # and the plain pass still works after the tracker is gone
    assert all(p.grad is not None for p in net.parameters())
    # how much the tracking and folding cost is a benchmark's question (make bench: the model rows),
    # not a timed test: on a shared 2-core machine a timing bound only measures the neighbours


def test_folding_a_twelve_block_model_is_fast():
    torch.manual_seed(0)
    layers = nn.Sequential(*(nn.TransformerEncoderLayer(d_model=32, nhead=4) for _ in range(12)))
    x = torch.randn(5, 3, 32)
    with modules.ModuleTracker() as tracker:
        out = layers(x).pow(2).mean()
    start = time.perf_counter()
    owners = module_layers.owner_of_nodes(tracker.calls, module_layers.module_names({"layers": layers}))
    built = graph.build(out, "loss", {}, [], {})
    g = module_layers.fold_graph(built, owners)
    elapsed = time.perf_counter() - start
    tracker.clear()
    print(
        f"12 TransformerEncoderLayers: {len(built.nodes)} nodes, owners + build + fold {elapsed * 1e3:.1f} ms"
    )
    assert [b.lines()[0] for b in boxes(g)] == ["layers.0–11 (TransformerEncoderLayer) × 12"]
    assert len(built.nodes) > 800
    png = draw.to_png(g)
    assert png.startswith(b"\x89PNG")
    from PIL import Image

    assert Image.open(io.BytesIO(png)).size[0] < 700
    (BUILD / "fold_transformer12.png").write_bytes(png)


def test_three_units_fold_and_a_unit_opens_with_its_layer():
    """A window seen once never beats a run (three Linear, Tanh units fold, with a Linear and a
    Sigmoid after them); the classic MLP's units are (Linear, ReLU), not (ReLU, Linear)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        *[m for _ in range(3) for m in (nn.Linear(4, 4), nn.Tanh())], nn.Linear(4, 1), nn.Sigmoid()
    )
    _, owners, built = traced({"net": net}, lambda: net(torch.ones(2, 4)).sum())
    names = [b.lines()[0] for b in boxes(module_layers.fold_graph(built, owners))]
    assert names == ["net.7 (Sigmoid)", "net.6 (Linear)", "net.0–5 (Linear, Tanh) × 3"]
    layers = [nn.Linear(4, 8), nn.ReLU(), *[m for _ in range(3) for m in (nn.Linear(8, 8), nn.ReLU())]]
    net = nn.Sequential(*layers, nn.Linear(8, 1))
    _, owners, built = traced({"net": net}, lambda: net(torch.ones(2, 4)).sum())
    names = [b.lines()[0] for b in boxes(module_layers.fold_graph(built, owners))]
    assert names == ["net.8 (Linear)", "net.2–7 (Linear, ReLU) × 3", "net.1 (ReLU)", "net.0 (Linear)"]
    unfolded = [b.lines()[0] for b in boxes(module_layers.fold_graph(built, owners, repeats=False))]
    assert unfolded == [f"net.{i} ({'Linear' if i % 2 == 0 else 'ReLU'})" for i in range(8, -1, -1)]


def test_graph_unfold_draws_each_repeated_block(run):
    """--graph unfold: every module call its own box, repeated blocks and units too (as its help
    says); plain --graph folds them."""
    torch.manual_seed(0)
    run.ns["net"] = nn.Sequential(*[m for _ in range(5) for m in (nn.Linear(4, 4), nn.Tanh())])
    cell = "loss = net(torch.ones(2, 4)).sum()\nloss.backward()"
    folded = [n.lines()[0] for n in run("--graph", cell).graph.nodes if n.kind == "module"]
    assert folded == ["net.0–9 (Linear, Tanh) × 5"]
    unfolded = [n.name for n in run("--graph unfold", cell).graph.nodes if n.kind == "module"]
    assert unfolded == [f"net.{i}" for i in range(9, -1, -1)]
