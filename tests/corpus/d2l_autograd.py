# ruff: noqa
# fmt: off
# Source: Dive into Deep Learning, section 2.5 "Automatic Differentiation" (PyTorch tab)
#   https://d2l.ai/chapter_preliminaries/autograd.html
#   d2l-ai/d2l-en chapter_preliminaries/autograd.md; cells taken from the revised text in
#   smolix/d2l-neu chapter_preliminaries/autograd.md (commit 0bb206a430e8f3e22569cac53cbacb56edfc2fa0),
#   which adds "Turning Off Gradient Tracking" and "Higher-Order Derivatives".
# Cells in the order of the chapter, one per PyTorch code block.
# Changes: one cell added at the end, the chapter's exercise 2 ("After running the function
# for backpropagation, immediately run it again and see what happens"): it raises PyTorch's
# "Trying to backward through the graph a second time" error.

# %%
import torch

# %%
x = torch.arange(4.0)
x

# %%
# Can also create x = torch.arange(4.0, requires_grad=True)
x.requires_grad_(True)
x.grad  # The gradient is None by default

# %%
y = 2 * torch.dot(x, x)
y

# %%
y.backward()
x.grad

# %%
x.grad == 4 * x

# %%
x.grad.zero_()  # Reset the gradient
y = x.sum()
y.backward()
x.grad

# %%
x.grad.zero_()
y = x * x
y.backward(gradient=torch.ones(len(y)))  # Equivalently: y.sum().backward()
x.grad

# %%
x.grad.zero_()
y = x * x
u = y.detach()
z = u * x

z.sum().backward()
x.grad == u

# %%
x.grad.zero_()
y.sum().backward()
x.grad == 2 * x

# %%
with torch.no_grad():
    y = 2 * torch.dot(x, x)
y.requires_grad  # False: y is detached from the graph

# %%
def f(a):
    b = a * 2
    while b.norm() < 1000:
        b = b * 2
    if b.sum() > 0:
        c = b
    else:
        c = 100 * b
    return c

# %%
a = torch.randn(size=(), requires_grad=True)
d = f(a)
d.backward()

# %%
a.grad == d / a

# %%
x3 = torch.tensor(2.0, requires_grad=True)
dy = torch.autograd.grad(x3 ** 3, x3, create_graph=True)[0]  # 3x^2 = 12
d2y = torch.autograd.grad(dy, x3)[0]                          # 6x  = 12
dy, d2y

# %%
# exercise 2: run the backward pass of the control-flow example again
d.backward()
