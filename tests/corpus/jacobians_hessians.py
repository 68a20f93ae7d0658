# ruff: noqa
# fmt: off
# Source: "Jacobians, Hessians, hvp, vhp, and more: composing function transforms"
#   https://pytorch.org/tutorials/intermediate/jacobians_hessians.html
#   pytorch/tutorials intermediate_source/jacobians_hessians.py
#   (commit 14f19bbffcff42ee752897e57b4b96e4972d302f)
# Cells in the order of the tutorial, one per code block.
# Changes: the benchmark cells (torch.utils.benchmark.Timer, timeit(500) and get_perf: their
# output is a timing, different on every run) are left out; sizes are smaller so every cell
# runs in well under a second: Dout 2048 -> 256 (jacfwd/jacrev section), Din 2048 -> 256
# (reverse section), Din 512 -> 64 (Hessian section), batch_size 64 -> 8, hvp vectors 2048 -> 256.

# %%
import torch
import torch.nn.functional as F
from functools import partial
_ = torch.manual_seed(0)

# %%
def predict(weight, bias, x):
    return F.linear(x, weight, bias).tanh()

# %%
D = 16
weight = torch.randn(D, D)
bias = torch.randn(D)
x = torch.randn(D)  # feature vector

# %%
def compute_jac(xp):
    jacobian_rows = [torch.autograd.grad(predict(weight, bias, xp), xp, vec)[0]
                     for vec in unit_vectors]
    return torch.stack(jacobian_rows)

xp = x.clone().requires_grad_()
unit_vectors = torch.eye(D)

jacobian = compute_jac(xp)

print(jacobian.shape)
print(jacobian[0])  # show first row

# %%
from torch.func import vmap, vjp

_, vjp_fn = vjp(partial(predict, weight, bias), x)

ft_jacobian, = vmap(vjp_fn)(unit_vectors)

# let's confirm both methods compute the same result
assert torch.allclose(ft_jacobian, jacobian)

# %%
from torch.func import jacrev

ft_jacobian = jacrev(predict, argnums=2)(weight, bias, x)

# confirm
assert torch.allclose(ft_jacobian, jacobian)

# %%
# note the change in input via argnums params of 0,1 to map to weight and bias
ft_jac_weight, ft_jac_bias = jacrev(predict, argnums=(0, 1))(weight, bias, x)

# %%
from torch.func import jacrev, jacfwd

# %%
Din = 32
Dout = 256  # tutorial: 2048
weight = torch.randn(Dout, Din)

bias = torch.randn(Dout)
x = torch.randn(Din)

# remember the general rule about taller vs wider... here we have a taller matrix:
print(weight.shape)

# %%
Din = 256  # tutorial: 2048
Dout = 32
weight = torch.randn(Dout, Din)
bias = torch.randn(Dout)
x = torch.randn(Din)

# %%
from torch.func import hessian

# lets reduce the size in order not to blow out colab. Hessians require
# significant memory:
Din = 64  # tutorial: 512
Dout = 32
weight = torch.randn(Dout, Din)
bias = torch.randn(Dout)
x = torch.randn(Din)

hess_api = hessian(predict, argnums=2)(weight, bias, x)
hess_fwdfwd = jacfwd(jacfwd(predict, argnums=2), argnums=2)(weight, bias, x)
hess_revrev = jacrev(jacrev(predict, argnums=2), argnums=2)(weight, bias, x)

# %%
torch.allclose(hess_api, hess_fwdfwd)

# %%
batch_size = 8  # tutorial: 64
Din = 31
Dout = 33

weight = torch.randn(Dout, Din)
print(f"weight shape = {weight.shape}")

bias = torch.randn(Dout)

x = torch.randn(batch_size, Din)

compute_batch_jacobian = vmap(jacrev(predict, argnums=2), in_dims=(None, None, 0))
batch_jacobian0 = compute_batch_jacobian(weight, bias, x)

# %%
def predict_with_output_summed(weight, bias, x):
    return predict(weight, bias, x).sum(0)

batch_jacobian1 = jacrev(predict_with_output_summed, argnums=2)(weight, bias, x).movedim(1, 0)
assert torch.allclose(batch_jacobian0, batch_jacobian1)

# %%
compute_batch_hessian = vmap(hessian(predict, argnums=2), in_dims=(None, None, 0))

batch_hess = compute_batch_hessian(weight, bias, x)
batch_hess.shape

# %%
from torch.func import jvp, grad, vjp

def hvp(f, primals, tangents):
  return jvp(grad(f), primals, tangents)[1]

# %%
def f(x):
  return x.sin().sum()

x = torch.randn(256)  # tutorial: 2048
tangent = torch.randn(256)  # tutorial: 2048

result = hvp(f, (x,), (tangent,))

# %%
def hvp_revrev(f, primals, tangents):
  _, vjp_fn = vjp(grad(f), *primals)
  return vjp_fn(*tangents)

result_hvp_revrev = hvp_revrev(f, (x,), (tangent,))
assert torch.allclose(result, result_hvp_revrev[0])
