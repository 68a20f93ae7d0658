# ruff: noqa
# fmt: off
# Source: the examples in the docstrings of PyTorch's autograd API (pytorch/pytorch, as
#   shipped in torch 2.13; rendered at https://pytorch.org/docs/stable/autograd.html):
#   torch/autograd/functional.py (vjp, jvp, jacobian, hessian, vhp, hvp),
#   torch/_tensor.py (Tensor.register_hook), torch/_functorch/eager_transforms.py (torch.func.grad),
#   torch/autograd/grad_mode.py (no_grad, enable_grad, set_grad_enabled).
# Each ">>>" example becomes cells whose last line is the expression the docstring shows.
# Changes: an import cell first (the docstrings assume the names are imported); the
#   set_grad_enabled example, which ends with grad mode turned off, comes last.

# %%
import torch
from torch.autograd.functional import vjp, jvp, jacobian, hessian, vhp, hvp

# %%
def exp_reducer(x):
    return x.exp().sum(dim=1)
inputs = torch.rand(4, 4)
v = torch.ones(4)
vjp(exp_reducer, inputs, v)

# %%
vjp(exp_reducer, inputs, v, create_graph=True)

# %%
def adder(x, y):
    return 2 * x + 3 * y
inputs = (torch.rand(2), torch.rand(2))
v = torch.ones(2)
vjp(adder, inputs, v)

# %%
inputs = torch.rand(4, 4)
v = torch.ones(4, 4)
jvp(exp_reducer, inputs, v)

# %%
inputs = (torch.rand(2), torch.rand(2))
v = (torch.ones(2), torch.ones(2))
jvp(adder, inputs, v)

# %%
inputs = torch.rand(2, 2)
jacobian(exp_reducer, inputs)

# %%
jacobian(exp_reducer, inputs, create_graph=True)

# %%
def exp_adder(x, y):
    return 2 * x.exp() + 3 * y
inputs = (torch.rand(2), torch.rand(2))
jacobian(exp_adder, inputs)

# %%
def linear_model(x):
    W = torch.tensor([[2.0, -1.0], [0.0, 1.0]])
    b = torch.tensor([1.0, 0.5])
    return x @ W.T + b

x = torch.randn(4, 2, requires_grad=True)
jac = jacobian(linear_model, x, vectorize=True)
jac.shape

# %%
def pow_reducer(x):
    return x.pow(3).sum()
inputs = torch.rand(2, 2)
hessian(pow_reducer, inputs)

# %%
def pow_adder_reducer(x, y):
    return (2 * x.pow(2) + 3 * y.pow(2)).sum()
inputs = (torch.rand(2), torch.rand(2))
hessian(pow_adder_reducer, inputs)

# %%
inputs = torch.rand(2, 2)
v = torch.ones(2, 2)
vhp(pow_reducer, inputs, v)

# %%
hvp(pow_reducer, inputs, v, create_graph=True)

# %%
v = torch.tensor([0., 0., 0.], requires_grad=True)
h = v.register_hook(lambda grad: grad * 2)  # double the gradient
v.backward(torch.tensor([1., 2., 3.]))
v.grad

# %%
h.remove()  # removes the hook

# %%
from torch.func import grad
x = torch.randn([])
cos_x = grad(lambda x: torch.sin(x))(x)
assert torch.allclose(cos_x, x.cos())

# Second-order gradients
neg_sin_x = grad(grad(lambda x: torch.sin(x)))(x)
assert torch.allclose(neg_sin_x, -x.sin())

# %%
from torch.func import grad, vmap
batch_size, feature_size = 3, 5

def model(weights, feature_vec):
    # Very simple linear model with activation
    assert feature_vec.dim() == 1
    return feature_vec.dot(weights).relu()

def compute_loss(weights, example, target):
    y = model(weights, example)
    return ((y - target) ** 2).mean()  # MSELoss

weights = torch.randn(feature_size, requires_grad=True)
examples = torch.randn(batch_size, feature_size)
targets = torch.randn(batch_size)
inputs = (weights, examples, targets)
grad_weight_per_example = vmap(grad(compute_loss), in_dims=(None, 0, 0))(
    *inputs
)

# %%
from torch.func import grad
def my_loss_func(y, y_pred):
    loss_per_sample = (0.5 * y_pred - y) ** 2
    loss = loss_per_sample.mean()
    return loss, (y_pred, loss_per_sample)

fn = grad(my_loss_func, argnums=(0, 1), has_aux=True)
y_true = torch.rand(4)
y_preds = torch.rand(4, requires_grad=True)
out = fn(y_true, y_preds)
# > output is ((grads w.r.t y_true, grads w.r.t y_preds), (y_pred, loss_per_sample))

# %%
x = torch.tensor([1.], requires_grad=True)
with torch.no_grad():
    y = x * 2
y.requires_grad

# %%
@torch.no_grad()
def doubler(x):
    return x * 2
z = doubler(x)
z.requires_grad

# %%
@torch.no_grad()
def tripler(x):
    return x * 3
z = tripler(x)
z.requires_grad

# %%
# factory function exception
with torch.no_grad():
    a = torch.nn.Parameter(torch.rand(10))
a.requires_grad

# %%
x = torch.tensor([1.], requires_grad=True)
with torch.no_grad():
    with torch.enable_grad():
        y = x * 2
y.requires_grad

# %%
y.backward()
x.grad

# %%
@torch.enable_grad()
def doubler(x):
    return x * 2
with torch.no_grad():
    z = doubler(x)
z.requires_grad

# %%
@torch.enable_grad()
def tripler(x):
    return x * 3
with torch.no_grad():
    z = tripler(x)
z.requires_grad

# %%
x = torch.tensor([1.], requires_grad=True)
is_train = False
with torch.set_grad_enabled(is_train):
    y = x * 2
y.requires_grad

# %%
_ = torch.set_grad_enabled(True)
y = x * 2
y.requires_grad

# %%
_ = torch.set_grad_enabled(False)
y = x * 2
y.requires_grad
