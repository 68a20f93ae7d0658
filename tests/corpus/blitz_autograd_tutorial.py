# ruff: noqa
# fmt: off
# Source: "A Gentle Introduction to torch.autograd"
#   https://pytorch.org/tutorials/beginner/blitz/autograd_tutorial.html
#   pytorch/tutorials beginner_source/blitz/autograd_tutorial.py (read from the mirror
#   qiaoyafeng/learn-ai, commit 92af56a1116053a86060677881bd789ed93c723b)
# Cells in the order of the tutorial, one per code block.
# Changes: torchvision's pretrained resnet18 (a weight download) is replaced by a tiny
# stand-in module with the same ``fc`` attribute, built from a fixed seed; its ``fc``
# has 8 inputs instead of resnet18's 512 (so ``nn.Linear(512, 10)`` becomes ``nn.Linear(8, 10)``).

# %%
import torch
from torch import nn  # (added: used by the resnet18 stand-in)


class TinyResNet(nn.Module):  # stand-in for resnet18(weights=ResNet18_Weights.DEFAULT)
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 1000)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.relu(self.conv1(x))), 1))


torch.manual_seed(0)
model = TinyResNet()
data = torch.rand(1, 3, 64, 64)
labels = torch.rand(1, 1000)

# %%
prediction = model(data) # forward pass

# %%
loss = (prediction - labels).sum()
loss.backward() # backward pass

# %%
optim = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)

# %%
optim.step() #gradient descent

# %%
import torch

a = torch.tensor([2., 3.], requires_grad=True)
b = torch.tensor([6., 4.], requires_grad=True)

# %%
Q = 3*a**3 - b**2

# %%
external_grad = torch.tensor([1., 1.])
Q.backward(gradient=external_grad)

# %%
# check if collected gradients are correct
print(9*a**2 == a.grad)
print(-2*b == b.grad)

# %%
x = torch.rand(5, 5)
y = torch.rand(5, 5)
z = torch.rand((5, 5), requires_grad=True)

a = x + y
print(f"Does `a` require gradients? : {a.requires_grad}")
b = x + z
print(f"Does `b` require gradients?: {b.requires_grad}")

# %%
from torch import nn, optim

model = TinyResNet()  # stand-in for resnet18(weights=ResNet18_Weights.DEFAULT)

# Freeze all the parameters in the network
for param in model.parameters():
    param.requires_grad = False

# %%
model.fc = nn.Linear(8, 10)  # resnet18: nn.Linear(512, 10)

# %%
# Optimize only the classifier
optimizer = optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
