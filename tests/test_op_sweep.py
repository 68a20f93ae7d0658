"""A sweep over PyTorch's differentiable ops, as PyTorch's own OpInfo tests sweep them (issue 24):
``--steps`` and ``--graph full`` over each one never raise, never name a result they do not define,
and the report's grads are autograd's own (the oracle: ``torch.autograd.grad`` on the same cell)."""

from __future__ import annotations

import re

import pytest
import torch

from torchgrad_magic import grad

POINT = "x=torch.tensor([0.5, -1.0, 2.0, 1.5, -0.3, 0.8])"
OPS = [
    "torch.sin(x)",
    "torch.cos(x)",
    "torch.tan(x)",
    "torch.exp(x)",
    "torch.log(x.abs() + 1)",
    "torch.sqrt(x.abs() + 1)",
    "torch.tanh(x)",
    "torch.sigmoid(x)",
    "torch.relu(x)",
    "torch.abs(x)",
    "torch.nn.functional.gelu(x)",
    "torch.nn.functional.silu(x)",
    "torch.nn.functional.softplus(x)",
    "torch.nn.functional.elu(x)",
    "torch.nn.functional.leaky_relu(x)",
    "torch.clamp(x, -0.5, 0.5)",
    "torch.erf(x)",
    "torch.atan(x)",
    "torch.sinh(x)",
    "torch.asinh(x)",
    "torch.reciprocal(x + 3)",
    "torch.rsqrt(x.abs() + 1)",
    "torch.log1p(x.abs())",
    "torch.expm1(x)",
    "torch.square(x)",
    "x.pow(3)",
    "torch.maximum(x, x * 0.5)",
    "torch.minimum(x, -x)",
    "torch.where(x > 0, x, -x)",
    "torch.softmax(x, 0)",
    "torch.log_softmax(x, 0)",
    "torch.cumsum(x, 0)",
    "torch.cumprod(x, 0)",
    "x.prod()",
    "x.max()",
    "x.min()",
    "x.amax()",
    "x.norm()",
    "torch.var(x)",
    "torch.std(x)",
    "torch.var_mean(x)[0]",
    "torch.mean(x)",
    "x.sum()",
    "torch.sort(x)[0]",
    "torch.topk(x, 2)[0]",
    "x.flip(0)",
    "x.roll(1)",
    "x.reshape(2, 3)",
    "x.view(3, 2).t()",
    "x.unsqueeze(0).expand(2, 6)",
    "x[1:4]",
    "x[[0, 2, 4]]",
    "x.repeat(2)",
    "torch.cat([x, x * 2])",
    "torch.stack([x, x])",
    "torch.outer(x, x)",
    "torch.dot(x, x)",
    "torch.kron(x[:2], x[:2])",
    "torch.trace(torch.outer(x, x))",
    "torch.linalg.det(torch.outer(x[:3], x[:3]) + torch.eye(3))",
    "torch.nn.functional.mse_loss(x, torch.zeros(6))",
    "torch.nn.functional.l1_loss(x, torch.ones(6))",
    "torch.nn.functional.smooth_l1_loss(x, torch.ones(6))",
    "torch.nn.functional.binary_cross_entropy(torch.sigmoid(x), torch.ones(6))",
    "torch.nn.functional.cross_entropy(x.view(2, 3), torch.tensor([0, 2]))",
    "torch.nn.functional.normalize(x, dim=0)",
    "torch.nn.functional.dropout(x, 0.0)",
    "torch.nn.functional.layer_norm(x, (6,))",
    "torch.nn.functional.conv1d(x.view(1, 1, 6), torch.ones(1, 1, 3))",
    "torch.nn.functional.max_pool1d(x.view(1, 1, 6), 2)",
    "torch.nn.functional.avg_pool1d(x.view(1, 1, 6), 2)",
    "torch.nn.functional.embedding(torch.tensor([0, 2]), x.view(3, 2))",
    "torch.einsum('i,i->', x, x)",
    "torch.atan2(x, x.abs() + 1)",
    "torch.lerp(x, x * 2, 0.3)",
    "torch.addcmul(x, x, x)",
    "torch.hypot(x, x)",
    "torch.logsumexp(x, 0)",
    "torch.nn.functional.hardtanh(x)",
    "torch.nn.functional.softsign(x)",
    "torch.diff(x)",
    "torch.tril(torch.outer(x, x))",
    "torch.split(x, 2)[1]",
    "torch.unbind(x)[2]",
    "torch.chunk(x, 3)[0]",
    "x.masked_fill(x > 0, 0.0)",
    "torch.gather(x, 0, torch.tensor([1, 1]))",
    "x.index_select(0, torch.tensor([0, 5]))",
    "torch.polar(x.abs() + 1, x).abs()",
    "torch.fft.fft(x).abs()",
    "torch.linalg.inv(torch.outer(x[:2], x[:2]) + torch.eye(2))",
    "2 ** x",
    "x / (x.abs() + 1)",
    "x @ x",
    # reductions and scans along a dim (their formulas carry the dim: words with fields)
    "x.view(2, 3).mean(dim=0)",
    "x.view(2, 3).mean(dim=(0, 1))",
    "x.view(2, 3).sum(dim=1, keepdim=True)",
    "x.view(2, 3).amax(dim=0)",
    "x.view(2, 3).max(dim=1).values",
    "x.view(2, 3).min(dim=0)[0]",
    "torch.var(x.view(2, 3), dim=0)",
    "torch.std(x.view(2, 3), dim=1)",
    "torch.var_mean(x.view(2, 3), dim=0)[1]",
    "torch.prod(x.view(2, 3), dim=0)",
    "torch.logsumexp(x.view(2, 3), dim=1)",
    "torch.softmax(x.view(2, 3), dim=1)",
    "torch.cumsum(x.view(2, 3), dim=1)",
    "torch.linalg.vector_norm(x.view(2, 3), dim=1)",
    "x.norm(p=1)",
    "torch.nn.functional.cross_entropy(x.view(2, 3), torch.tensor([0, 2]), reduction='sum')",
]


def oracle(expr: str) -> torch.Tensor:
    x = torch.tensor([0.5, -1.0, 2.0, 1.5, -0.3, 0.8], requires_grad=True)
    y = eval(f"({expr}).sum()", {"torch": torch, "x": x})
    (found,) = torch.autograd.grad(y, x, allow_unused=True)
    return torch.zeros_like(x) if found is None else found


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("expr", OPS)
def test_steps_and_full_graph_explain_every_op(expr, lang):
    result = grad(f"y = ({expr}).sum()", wrt=POINT, steps=True, graph="full", lang=lang)
    text = str(result)  # renders: text, and the graph's own text
    assert result.graph is not None and result.graph.to_text()
    torch.testing.assert_close(result.grads["x"], oracle(expr), equal_nan=True)
    assert result.steps is not None, result.note_texts
    defined = {"x", "y"}
    for line in result.steps.forward:
        defined |= {name.strip() for name in line.split(" = ")[0].split(",")}
    for made_up in result.steps.made_up:  # a listing never uses a name it does not define
        used = any(re.search(rf"\b{made_up}\b", line.split(" = ", 1)[-1]) for line in result.steps.forward)
        assert not used or made_up in defined, (expr, result.steps.forward)
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("expr", "formula"),
    [
        ("torch.var(x.view(2, 3), dim=0)", "2·(a − mean)/(n − 1)"),
        ("torch.std(x.view(2, 3), dim=1, correction=0)", "(a − mean)/((n − 0)·"),
        ("torch.logsumexp(x.view(2, 3), 1)", "softmax(a) = exp(a − b)"),
        ("torch.cumsum(x, 0)", "g summed from the end along dim=0"),
    ],
)
def test_reductions_along_a_dim_are_explained(expr, formula):
    """No "not explained" for the reductions a course uses; the numbers stay autograd's."""
    result = grad(f"y = ({expr}).sum()", wrt=POINT, steps=True)
    listing = result.steps.to_text()
    assert formula in listing and "not explained" not in listing, listing
    torch.testing.assert_close(result.grads["x"], oracle(expr))


def test_indexing_reads_as_indexing():
    listing = grad(
        "b = x.view(2, 3)[:, 0]\ny = (b * const).sum()",
        wrt=POINT,
        steps=True,
        namespace={"const": torch.ones(2, 3)[:, 0], "torch": torch},
    ).steps.to_text()
    assert "[:, 0]" in listing and "__getitem__" not in listing, listing


@pytest.mark.parametrize("expr", OPS)
def test_steps_read_the_same_calls_without_the_full_record(expr):
    """--steps alone notes the calls that made the nodes (capture/record.NodeCalls, cheap); with an
    extra that evaluates the record (--check) the full record is made: the same steps either way."""
    alone = grad(f"y = ({expr}).sum()", wrt=POINT, steps=True)
    recorded = grad(f"y = ({expr}).sum()", wrt=POINT, steps=True, check=True)
    assert alone.steps is not None and recorded.steps is not None
    assert alone.steps.to_text() == recorded.steps.to_text(), expr
