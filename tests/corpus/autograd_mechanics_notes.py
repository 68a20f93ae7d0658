# ruff: noqa
# fmt: off
# Source: PyTorch documentation, "Autograd mechanics"
#   https://pytorch.org/docs/stable/notes/autograd.html
#   pytorch/pytorch docs/source/notes/autograd.rst (commit 94eeb1b22fe4aed51a9fa85e145a6d83d4dc8368;
#   the requires_grad example is from the earlier revision 01bcc2a219f01ea508749bce7d29bd47da3ef0d0)
# Cells in the order of the document, one per code block; ">>>" examples become cells whose
# last line is the expression the document shows the value of.
# Changes: an "import torch" cell first; the saved-tensor hooks example needs ``tmp_dir``,
#   ``os``, ``uuid`` and its pack/unpack pair defined, so its definitions (same text) come first,
#   with tmp_dir the system temporary directory; the in-place hook example's ``fn`` (left undefined
#   in the document) is a hook that prints the gradient it receives.

# %%
import torch

# %%
x = torch.randn(5, 5)  # requires_grad=False by default
y = torch.randn(5, 5)  # requires_grad=False by default
z = torch.randn((5, 5), requires_grad=True)
a = x + y
a.requires_grad

# %%
b = a + z
b.requires_grad

# %%
x = torch.randn(5, requires_grad=True)
y = x.pow(2)
print(x.equal(y.grad_fn._saved_self))  # True
print(x is y.grad_fn._saved_self)  # True

# %%
x = torch.randn(5, requires_grad=True)
y = x.exp()
print(y.equal(y.grad_fn._saved_result))  # True
print(y is y.grad_fn._saved_result)  # False

# %%
# Define a train function to be used in different threads
import threading


def train_fn():
    x = torch.ones(5, 5, requires_grad=True)
    # forward
    y = (x + 3) * (x + 4) * 0.5
    # backward
    y.sum().backward()
    # potential optimizer update


# User write their own threading code to drive the train_fn
threads = []
for _ in range(10):
    p = threading.Thread(target=train_fn, args=())
    p.start()
    threads.append(p)

for p in threads:
    p.join()

# %%
import os, tempfile, uuid  # (added)
tmp_dir = tempfile.gettempdir()  # (added; the files delete themselves)


class SelfDeletingTempFile():
    def __init__(self):
        self.name = os.path.join(tmp_dir, str(uuid.uuid4()))

    def __del__(self):
        os.remove(self.name)

def pack_hook(tensor):
    temp_file = SelfDeletingTempFile()
    torch.save(tensor, temp_file.name)
    return temp_file

def unpack_hook(temp_file):
    return torch.load(temp_file.name)

# %%
x = torch.randn(5, requires_grad=True)
y = x.pow(2)
y.grad_fn._raw_saved_self.register_hooks(pack_hook, unpack_hook)

# %%
with torch.autograd.graph.saved_tensors_hooks(lambda x: x, lambda x: x):
    x = torch.randn(5, requires_grad=True)
    y = x * x

# %%
def fn(grad):  # (added: the document leaves fn undefined)
    print("hook got", grad)
    return grad

# %%
t = torch.tensor(1., requires_grad=True).sin()
t.cos_()
t.register_hook(fn)
t.backward()
