# ruff: noqa
# fmt: off
# Source: cells written for this suite after the patterns of public tutorials that a new user
# pasted under %%grad cell by cell (issue 19):
#   Andrej Karpathy, makemore part 3 and part 4 ("Becoming a Backprop Ninja"),
#     https://github.com/karpathy/nn-zero-to-hero (lectures/makemore/makemore_part4_backprop.ipynb):
#     a small MLP whose intermediates call retain_grad(), then `loss_fast = F.cross_entropy(logits, Yb)`
#     with no backward(), then a hand-written dlogits compared with logits.grad; layers kept in a
#     list whose `.out` retains its grad; cells that hold only a comment.
#   Dive into Deep Learning 2.5 and the PyTorch autograd tutorials: reading `.grad` of a non-leaf
#     (PyTorch warns), at the top level, inside a helper function, and twice at one place.
# Made-up data (a seeded random batch) in place of the names data set; the three kinds of cell
# that %%grad changed (issue 19) each come several times.

# %%
import torch
import torch.nn.functional as F
g = torch.Generator().manual_seed(2147483647)
n, vocab, block, n_embd, n_hidden = 8, 12, 3, 4, 16
Xb = torch.randint(0, vocab, (n, block), generator=g)
Yb = torch.randint(0, vocab, (n,), generator=g)
C = torch.randn((vocab, n_embd), generator=g)
W1 = torch.randn((n_embd * block, n_hidden), generator=g) * 0.2
b1 = torch.randn(n_hidden, generator=g) * 0.1
W2 = torch.randn((n_hidden, vocab), generator=g) * 0.1
b2 = torch.randn(vocab, generator=g) * 0.1
parameters = [C, W1, b1, W2, b2]
for p in parameters:
    p.requires_grad = True

# %%
# forward pass, chunked into smaller steps that are possible to backward one at a time
emb = C[Xb]
embcat = emb.view(emb.shape[0], -1)
hpreact = embcat @ W1 + b1
h = torch.tanh(hpreact)
logits = h @ W2 + b2
logit_maxes = logits.max(1, keepdim=True).values
norm_logits = logits - logit_maxes
counts = norm_logits.exp()
counts_sum = counts.sum(1, keepdims=True)
counts_sum_inv = counts_sum**-1
probs = counts * counts_sum_inv
logprobs = probs.log()
loss = -logprobs[range(n), Yb].mean()
for p in parameters:
    p.grad = None
for t in [logprobs, probs, counts, counts_sum, counts_sum_inv, norm_logits, logit_maxes, logits, h, hpreact, embcat, emb]:
    t.retain_grad()
loss.backward()
loss

# %%
# Exercise 2: backprop through cross_entropy but all in one go

# %%
# now the action:
loss_fast = F.cross_entropy(logits, Yb)
print(loss_fast.item(), 'diff:', (loss_fast - loss).item())

# %%
dlogits = F.softmax(logits, 1)
dlogits[range(n), Yb] -= 1
dlogits /= n
print('logits exact:', torch.all(dlogits == logits.grad).item(), 'approximate:', torch.allclose(dlogits, logits.grad))
print('h untouched:', torch.allclose(h.grad, dlogits @ W2.T))

# %%
# the same forward pass again, all at once, no backward()
hpreact_fast = embcat @ W1 + b1
loss_again = F.cross_entropy(torch.tanh(hpreact_fast) @ W2 + b2, Yb)
loss_again

# %%
print(hpreact.grad.abs().max().item(), embcat.grad.abs().max().item(), emb.grad.shape)

# %%
# layers kept in a list, each keeping its output (makemore part 3's diagnostics)
class Linear:
    def __init__(self, fan_in, fan_out):
        self.weight = torch.randn((fan_in, fan_out), generator=g) / fan_in**0.5
        self.bias = torch.zeros(fan_out)
    def __call__(self, x):
        self.out = x @ self.weight + self.bias
        return self.out
    def parameters(self):
        return [self.weight, self.bias]

class Tanh:
    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out
    def parameters(self):
        return []

layers = [Linear(n_embd * block, n_hidden), Tanh(), Linear(n_hidden, vocab)]
params2 = [p for layer in layers for p in layer.parameters()]
for p in params2:
    p.requires_grad = True

# %%
x = C[Xb].view(n, -1)
for layer in layers:
    x = layer(x)
loss2 = F.cross_entropy(x, Yb)
for layer in layers:
    layer.out.retain_grad()
loss2.backward()
print(loss2.item())

# %%
# look at the loss again without a backward pass
x = C[Xb].view(n, -1)
for layer in layers[:2]:
    x = layer(x)
loss3 = F.cross_entropy(layers[2](x), Yb)

# %%
for i, layer in enumerate(layers):
    print(i, type(layer).__name__, layer.out.grad is None, tuple(layer.out.grad.shape) if layer.out.grad is not None else None)

# %%
# no backward() here, and a pass through logits fails halfway: loss.backward() freed the graph behind it
bad = (logits * 2).sum()

# %%
print(logits.grad.abs().sum().item(), torch.allclose(dlogits, logits.grad))

# %%
# activations kept by modules inside modules (UvA-style diagnostics), by a closure, a deque,
# a slots dataclass, a long list, and deep inside containers
import collections, dataclasses
class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
    def forward(self, x):
        self.out = torch.relu(self.lin(x))
        self.out.retain_grad()
        return self.out

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(Block(), Block())
        self.head = torch.nn.Linear(4, 1)
    def forward(self, x):
        return self.head(self.body(x))

net = Net()
xb = torch.randn(8, 4, generator=g)
net(xb).sum().backward(retain_graph=True)

def make():
    w = torch.randn(3, generator=g).requires_grad_()
    hid = w * 2
    hid.retain_grad()
    (hid ** 2).sum().backward(retain_graph=True)
    return (lambda: hid), w

getter, w_cl = make()

@dataclasses.dataclass(slots=True)
class Cache:
    act: torch.Tensor

ones = torch.ones(3, requires_grad=True)
dq = collections.deque([ones * 2])
big = [0.0] * 1500 + [ones * 4]
cache = Cache(ones * 10)
for t in (dq[0], big[-1], cache.act):
    t.retain_grad()
(dq[0].sum() + big[-1].sum() + cache.act.sum()).backward(retain_graph=True)
runs = {'a': [{'layers': {'n': [net]}}]}

# %%
y2 = (net.body[1].out ** 2).sum()

# %%
z = (getter() ** 3).sum()

# %%
q = (dq[0] * 7).sum() + (big[-1] * 11).sum() + (cache.act ** 2).sum()

# %%
y4 = runs['a'][0]['layers']['n'][0].body[0].out.sum()

# %%
print([b.out.grad.sum().item() for b in net.body], getter().grad.tolist(), dq[0].grad.tolist(), big[-1].grad.tolist(), cache.act.grad.tolist())

# %%
# reading .grad of a non-leaf: PyTorch warns, exactly as without %%grad
a = torch.tensor(2.0, requires_grad=True)
b = a * 3
b.backward()
print(b.grad)

# %%
def show(t):
    print('grad:', t.grad)

c = a ** 2
show(c)

# %%
c = a ** 2
show(c)

# %%
d = a * 5
d.backward()
for i in range(3):
    print(d.grad)

# %%
d.grad

# %%
import warnings
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    e = a + 1
    print(e.grad)

# %%
# the end: nothing to do
