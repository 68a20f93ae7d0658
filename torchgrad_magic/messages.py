"""Every sentence a user can see, in English and Chinese, keyed by message id.

Code never builds user-facing sentences inline: it calls ``t("id", **fields)``.
The language is ``en`` or ``zh``; ``auto`` follows the locale (``zh*`` gives
Chinese). Technical names (grad, grad_fn, is_leaf, requires_grad,
MulBackward0, backward(), --flags) stay as PyTorch and the magic spell them,
so what a learner reads matches what PyTorch prints.
"""

from __future__ import annotations

import contextlib
import contextvars
import locale
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

LANGUAGES = ("en", "zh")

MESSAGES: dict[str, dict[str, str]] = {
    # ---- the report ----------------------------------------------------
    "col.tensor": {"en": "tensor", "zh": "张量"},
    "col.role": {"en": "role", "zh": "角色"},
    "role.input": {"en": "input", "zh": "输入"},
    "role.leaf": {"en": "leaf", "zh": "叶子"},
    "role.intermediate": {"en": "intermediate", "zh": "中间量"},
    "role.output": {"en": "output", "zh": "输出"},
    "role.constant": {"en": "constant", "zh": "常量"},
    "role.alias": {"en": "= {name}", "zh": "即 {name}"},
    "headline.at": {"en": "{text} (at {points})", "zh": "{text}（在 {points} 处）"},
    "headline.sep": {"en": ", ", "zh": "，"},
    "list.and": {"en": "{first} and {last}", "zh": "{first} 和 {last}"},
    "note.prefix": {"en": "note: {note}", "zh": "提示：{note}"},
    # ---- notes ---------------------------------------------------------
    "note.backward_many": {
        "en": "the cell called {what} {count} times; shown: call {index} (on {out}), as it ran.",
        "zh": "单元格调用了 {count} 次 {what}；这里显示第 {index} 次（对 {out}），即它运行当时的值。",
    },
    "note.backward_many_after": {
        "en": "the cell called {what} {count} times; shown: call {index} (on {out}), as it ran. "
        "After it, the cell changed {changes}.",
        "zh": "单元格调用了 {count} 次 {what}；这里显示第 {index} 次（对 {out}），即它运行当时的值。"
        "之后单元格又改动了 {changes}。",
    },
    "note.backward_many_added": {
        "en": "the cell called {what} {count} times; shown: call {index} (on {out}), as it ran: it added its {new} "
        "to the {old} {name}.grad held. PyTorch adds grads up; clear them between calls ({name}.grad = None or "
        "optimizer.zero_grad()) to get one call's.",
        "zh": "单元格调用了 {count} 次 {what}；这里显示第 {index} 次（对 {out}），即它运行当时的值：它把自己的 {new} "
        "加到了 {name}.grad 原有的 {old} 上。PyTorch 会累加梯度；想只要一次的梯度，请在两次调用之间清零"
        "（{name}.grad = None 或 optimizer.zero_grad()）。",
    },
    "note.backward_many_added_after": {
        "en": "the cell called {what} {count} times; shown: call {index} (on {out}), as it ran: it added its {new} "
        "to the {old} {name}.grad held. PyTorch adds grads up; clear them between calls ({name}.grad = None or "
        "optimizer.zero_grad()) to get one call's. After it, the cell changed {changes}.",
        "zh": "单元格调用了 {count} 次 {what}；这里显示第 {index} 次（对 {out}），即它运行当时的值：它把自己的 {new} "
        "加到了 {name}.grad 原有的 {old} 上。PyTorch 会累加梯度；想只要一次的梯度，请在两次调用之间清零"
        "（{name}.grad = None 或 optimizer.zero_grad()）。之后单元格又改动了 {changes}。",
    },
    "note.vjp": {
        "en": "{what} was given the weights {v} for {out}, so each grad is {v}·({deriv}) for that {v} "
        "(a vector-Jacobian product), not the grad of one number.",
        "zh": "{what} 给 {out} 传入了权重 {v}，所以每个梯度是 {v}·({deriv})（向量-雅可比积），不是某个标量的梯度。",
    },
    "note.scaled": {
        "en": "{what} was given the weight {c} for {out}, so each grad is {c} × {deriv} "
        "(the grads of {c}·{out}), not {deriv} itself.",
        "zh": "{what} 给 {out} 传入了权重 {c}，所以每个梯度是 {c} × {deriv}（即 {c}·{out} 的梯度），不是 {deriv} 本身。",
    },
    "note.amp_scaled": {
        "en": "{out} is {loss} × {scale}, the loss scale of {scaler} (torch.amp.GradScaler){since}, so each "
        "grad shown is {scale} times the grad without scaling. Unscaled (÷ {scale}): {unscaled}. "
        "{scaler}.unscale_(optimizer) divides .grad by the scale in place; {scaler}.step(optimizer) does so "
        "first if the cell has not.",
        "zh": "{out} 等于 {loss} × {scale}，{scale} 是 {scaler}（torch.amp.GradScaler）的损失缩放系数{since}，"
        "所以表中每个梯度都是不缩放时的 {scale} 倍。除以 {scale} 还原后：{unscaled}。"
        "{scaler}.unscale_(optimizer) 会把 .grad 原地除以缩放系数；如果之前没调用过它，{scaler}.step(optimizer) 会先做这一步。",
    },
    "note.amp_unscaled_after": {
        "en": "{out} is {loss} × {scale}, the loss scale of {scaler} (torch.amp.GradScaler){since}, so each "
        "grad shown is {scale} times the grad without scaling. After the call, the cell's {scaler}.unscale_() "
        "or {scaler}.step() divided .grad by the scale in place: .grad now holds the unscaled grads.",
        "zh": "{out} 等于 {loss} × {scale}，{scale} 是 {scaler}（torch.amp.GradScaler）的损失缩放系数{since}，"
        "所以表中每个梯度都是不缩放时的 {scale} 倍。调用之后，单元格里的 {scaler}.unscale_() 或 {scaler}.step() "
        "已把 .grad 原地除以缩放系数：.grad 现在存的就是还原后的梯度。",
    },
    "amp.the_loss": {"en": "the loss", "zh": "损失值"},
    "amp.since": {
        "en": " (now {now}: {scaler}.update() changed it after the call)",
        "zh": "（调用之后 {scaler}.update() 已把它改为 {now}）",
    },
    "extras.several": {
        "en": "--check, --plot, --symbolic, --order, --hessian and --jacobian evaluate one output; the "
        "cell's call differentiated {label}, so they are left out (differentiate one output in its own call).",
        "zh": "--check、--plot、--symbolic、--order、--hessian 和 --jacobian 只针对一个输出；单元格的调用求的是 "
        "{label} 的梯度，所以这些都略去了（请对单个输出单独求导）。",
    },
    "extras.weighted": {
        "en": "--check, --plot and the other extras look at {out} itself (summed when it has several "
        "elements), not at {label} with the weights given to the call.",
        "zh": "--check、--plot 等附加项看的是 {out} 本身（多个元素时求和），不是带权重的 {label}。",
    },
    "note.complex_weight": {
        "en": "{what} was given a complex weight for {out}: PyTorch's grads of complex numbers are conjugate "
        "Wirtinger derivatives (the weight multiplies the conjugate), so the grads shown are weighted ones, "
        "not d{out}/dz itself.",
        "zh": "{what} 给 {out} 传入了复数权重：PyTorch 对复数求的是共轭 Wirtinger 导数（权重乘在共轭上），"
        "所以显示的是加权后的梯度，不是 d{out}/dz 本身。",
    },
    "note.complex_grad": {
        "en": "{names}: complex. The grad shown is PyTorch's convention: for z = a + bi it is "
        "∂{out}/∂a + i·∂{out}/∂b (the direction {out} grows fastest), not a complex derivative of {out}.",
        "zh": "{names} 是复数。显示的梯度是 PyTorch 的约定：对 z = a + bi，它是 ∂{out}/∂a + i·∂{out}/∂b"
        "（{out} 增长最快的方向），不是 {out} 的复导数。",
    },
    "note.inner_pass": {
        "en": "{names}: their grads came from a backward pass run inside the one on {out} (a reentrant "
        "checkpoint recomputing its layers, or a custom Function's backward calling backward()).",
        "zh": "{names}：它们的梯度来自在 {out} 的反向传播内部又运行的一次反向传播（重算层的可重入 checkpoint，"
        "或在 backward 里调用 backward() 的自定义 Function）。",
    },
    "note.ones": {
        "en": "{what} was given ones for {out} ({count} elements), so each grad is the grad of "
        "{out}.sum(); when {out} is computed element by element, that is each element's own derivative.",
        "zh": "{what} 给 {out}（{count} 个元素）传入了全 1 的权重，所以每个梯度是 {out}.sum() 的梯度；"
        "当 {out} 是逐元素算出来的，这正是每个元素自己的导数。",
    },
    "note.several": {
        "en": "{what} differentiated several outputs at once ({outputs}): each grad is the grad of "
        "{label}, what every output sends added up (one output's own grads need a call of their own).",
        "zh": "{what} 一次对多个输出求导（{outputs}）：每个梯度是 {label} 的梯度，即各输出贡献之和"
        "（单个输出自己的梯度要单独调用一次）。",
    },
    "note.accumulated": {
        "en": "{name}.grad already held {old}, so backward() added this call's {new}: {name}.grad = {total}. "
        "PyTorch adds grads up; clear them first ({name}.grad = None or optimizer.zero_grad()) to get one call's.",
        "zh": "{name}.grad 里原来已有 {old}，所以 backward() 把这次的 {new} 加了上去：{name}.grad = {total}。"
        "PyTorch 会累加梯度；想只要一次的梯度，请先清零（{name}.grad = None 或 optimizer.zero_grad()）。",
    },
    "note.accumulated_many": {
        "en": "{names} ({count} tensors): .grad already held grads from before, so backward() added this "
        "call's to them (.grad now holds the sums). PyTorch adds grads up; clear them first "
        "(optimizer.zero_grad(), or .grad = None) to get one call's.",
        "zh": "{names}（共 {count} 个张量）：.grad 里原来已有梯度，所以 backward() 把这次的梯度加了上去"
        "（.grad 现在是两者之和）。PyTorch 会累加梯度；想只要一次的梯度，请先清零（optimizer.zero_grad() 或 .grad = None）。",
    },
    "note.accumulated_params": {
        "en": "{names} ({count} parameters): .grad already held grads from before, so backward() added "
        "this call's to them; the parameter table shows this call's grads, .grad now holds the sums. "
        "PyTorch adds grads up; clear them first (optimizer.zero_grad()) to get one call's.",
        "zh": "{names}（共 {count} 个参数）：.grad 里原来已有梯度，所以 backward() 把这次的梯度加了上去；"
        "参数表中是这次的梯度，.grad 现在是两者之和。PyTorch 会累加梯度；想只要一次的梯度，请先清零（optimizer.zero_grad()）。",
    },
    "note.after": {
        "en": "after the call, the cell changed {changes}; the table shows the values at the call.",
        "zh": "调用之后单元格又改动了 {changes}；表中是调用当时的值。",
    },
    "after.value": {"en": "{name} (now {now})", "zh": "{name}（现在是 {now}）"},
    "after.values_many": {
        "en": "the values of {count} tensors ({names})",
        "zh": "{count} 个张量的值（{names}）",
    },
    "after.both_many": {
        "en": "the values and .grad of {count} tensors ({names})",
        "zh": "{count} 个张量的值和 .grad（{names}）",
    },
    "after.grads_many": {
        "en": "the .grad of {count} tensors ({names})",
        "zh": "{count} 个张量的 .grad（{names}）",
    },
    "after.grads_none": {
        "en": "the .grad of {count} tensors (now None: {names})",
        "zh": "{count} 个张量的 .grad（现在是 None：{names}）",
    },
    "after.grad_none": {"en": "{name}.grad (now None)", "zh": "{name}.grad（现在是 None）"},
    "after.grad_zero": {"en": "{name}.grad (zeroed: now {now})", "zh": "{name}.grad（已清零：现在是 {now}）"},
    "after.grad_other": {"en": "{name}.grad (now {now})", "zh": "{name}.grad（现在是 {now}）"},
    "state.changed": {
        "en": "changed after the call (too big to copy at every call): not shown",
        "zh": "调用后被改动（太大，无法每次都复制）：不显示",
    },
    "note.not_kept": {
        "en": "{names}: too big to copy at every call, and changed in place after call {index}: their data "
        "is shown as it is now, and a grad that changed is not shown.",
        "zh": "{names}：太大，无法在每次调用时复制，且在第 {index} 次调用后被原地修改：数据显示的是现在的值，"
        "改动过的梯度不显示。",
    },
    "note.grad_not_kept": {
        "en": "{names}: too big to copy at every call, and their grads changed in place after call {index} "
        "(.grad.zero_(), clip_grad_norm_): those grads are not shown.",
        "zh": "{names}：太大，无法在每次调用时复制，且它们的梯度在第 {index} 次调用后被原地修改"
        "（.grad.zero_()、clip_grad_norm_）：这些梯度不显示。",
    },
    "note.higher_order": {
        "en": "call {index} ({what}) differentiated a grad made with create_graph=True (a second derivative); "
        "the table shows the first derivatives, and .grad now also holds what that call added.",
        "zh": "第 {index} 次调用（{what}）对一个用 create_graph=True 得到的梯度再求导（二阶导数）；"
        "表中是一阶导数，而 .grad 里现在也包含了那次调用加上的值。",
    },
    "note.helpers": {
        "en": "{helpers}: torch's helper ran backward passes of its own (the number of calls in brackets); "
        "what it returned is the cell's result, and its passes are not shown as the cell's calls.",
        "zh": "{helpers}：torch 的辅助函数自己做了反向传播（括号里是调用次数）；它返回的结果就是单元格得到的，"
        "这些反向传播不算作单元格自己的调用。",
    },
    "note.higher_order_grad": {
        "en": "call {index} (torch.autograd.grad()) differentiated a grad made with create_graph=True: "
        "a second derivative ({values}), returned by that call; the table shows the first derivatives.",
        "zh": "第 {index} 次调用（torch.autograd.grad()）对一个用 create_graph=True 得到的梯度再求导："
        "即二阶导数（{values}），由那次调用返回；表中是一阶导数。",
    },
    "note.of_beside": {
        "en": "--of {out}: the cell's backward() was on another output, so .grad holds that call's grads "
        "({held}); the table shows d{out}/d…, computed by %%grad without storing it.",
        "zh": "--of {out}：单元格的 backward() 是对另一个输出调用的，所以 .grad 里是那次调用的梯度（{held}）；"
        "表中是 %%grad 算出的 d{out}/d…，没有存进 .grad。",
    },
    "note.stale_same": {
        "en": "{names}: already these very grads, from earlier code; %%grad left .grad as it was (a "
        "backward() now would add them again).",
        "zh": "{names} 里已经是这些梯度（之前的代码留下的）；%%grad 没有改动 .grad（现在再调用 backward() 会再加一遍）。",
    },
    "note.stale": {
        "en": "{name}.grad still holds {old} from earlier code; %%grad left it as it was (the table shows this cell's derivative).",
        "zh": "{name}.grad 里仍是之前留下的 {old}；%%grad 没有改动它（表中是本单元格的导数）。",
    },
    "note.not_stored": {
        "en": "the cell did not call backward(), so %%grad computed the grads of {out} without storing them "
        "({names} unchanged, graph kept); call {call} to fill .grad.",
        "zh": "单元格没有调用 backward()，所以 %%grad 算出了 {out} 的梯度但没有存进 .grad"
        "（{names} 不变，计算图保留）；调用 {call} 才会填写 .grad。",
    },
    "note.cell_empty": {
        "en": "the cell has no code (only comments or blank lines): it ran, and there is nothing to "
        "differentiate. Write the function under the %%grad line, e.g. y = 3 * x ** 2",
        "zh": "单元格里没有代码（只有注释或空行）：已照常运行，没有可求导的内容。"
        "请在 %%grad 这一行下面写函数，例如 y = 3 * x ** 2",
    },
    "note.nothing": {
        "en": "nothing to differentiate here: the cell made no tensor that depends on a leaf with requires_grad=True "
        "(use --wrt x=3 to make one).",
        "zh": "这里没有可求导的内容：单元格没有产生依赖于 requires_grad=True 叶子张量的张量（可用 --wrt x=3 创建一个）。",
    },
    "headline.nothing": {"en": "nothing to differentiate", "zh": "没有可求导的内容"},
    "note.summed": {
        "en": "{out} has {count} elements and backward() needs one number, "
        "so the grads are of {out}.sum() (as in {out}.sum().backward()).",
        "zh": "{out} 有 {count} 个元素，而 backward() 需要一个标量，"
        "所以这里求的是 {out}.sum() 的梯度（等同于 {out}.sum().backward()）。",
    },
    "note.off_path": {
        "en": "not on the way back from {out} (it was not computed from them, so backward() from {out} "
        "never reaches them): {names}.",
        "zh": "不在从 {out} 反向传播的路径上（{out} 不是由它们算出来的，所以从 {out} 出发的 backward() "
        "不会经过它们）：{names}。",
    },
    "note.unused": {
        "en": "{out} does not depend on {name}, so its grad is None.",
        "zh": "{out} 与 {name} 无关，所以 {name} 的 grad 是 None。",
    },
    "note.nonleaf_read": {
        "en": "the cell read {name}.grad: None, since {name} is not a leaf (made by {fn}) and backward() "
        "fills .grad of leaves only ({leaves}); {name}.retain_grad() before backward() keeps it.",
        "zh": "单元格读取了 {name}.grad：是 None，因为 {name} 不是叶子（{fn} 得到的），backward() 只填写叶子"
        "（{leaves}）的 .grad；在 backward() 之前调用 {name}.retain_grad() 可保留它。",
    },
    "note.non_finite": {
        "en": "{name} holds nan or inf values; gradients that pass through them are usually nan.",
        "zh": "{name} 中有 nan 或 inf；经过它们的梯度通常也是 nan。",
    },
    "word.a_tensor": {"en": "a tensor", "zh": "某个张量"},
    "word.an_operation": {"en": "an operation", "zh": "某个运算"},
    "word.the_leaves": {"en": "the leaves", "zh": "叶子张量"},
    "word.last_value": {"en": "the cell's last value", "zh": "单元格的最后一个值"},
    # ---- errors: the magic line -----------------------------------------
    "err.prefix": {"en": "%%grad: {message}", "zh": "%%grad：{message}"},
    "err.close_bracket": {
        "en": "unbalanced brackets: a closing '{ch}' has no opening bracket in: {line}",
        "zh": "括号不配对：右括号 '{ch}' 没有对应的左括号：{line}",
    },
    "err.open_bracket": {
        "en": "unbalanced brackets: {count} bracket(s) never closed in: {line}",
        "zh": "括号不配对：有 {count} 个括号没有闭合：{line}",
    },
    "err.quote": {
        "en": "unclosed quote ({quote}) in: {line}",
        "zh": "引号 {quote} 没有闭合：{line}",
    },
    "err.name_missing": {
        "en": "{where}: the variable name is missing",
        "zh": "{where}：缺少变量名",
    },
    "err.keyword": {
        "en": "{where}: '{name}' is a Python keyword, not a variable name",
        "zh": "{where}：'{name}' 是 Python 关键字，不能用作变量名",
    },
    "err.bad_name": {
        "en": "{where}: '{name}' is not a valid variable name (use letters, digits and _, not starting with a digit)",
        "zh": "{where}：'{name}' 不是合法的变量名（只能用字母、数字和 _，且不能以数字开头）",
    },
    "err.did_you_mean": {
        "en": "{message}; did you mean --wrt {expr}={name}?",
        "zh": "{message}；是不是想写 --wrt {expr}={name}？",
    },
    "err.wrt_name_missing": {
        "en": "{where}: the name before '=' is missing; write e.g. --wrt x=3",
        "zh": "{where}：'=' 前面缺少变量名；例如写成 --wrt x=3",
    },
    "err.wrt_torch": {
        "en": "{where}: a tensor named 'torch' would hide the torch module; pick another name",
        "zh": "{where}：名为 'torch' 的张量会遮住 torch 模块，请换个名字",
    },
    "err.wrt_empty": {
        "en": "{where}: the value after '=' is empty; write e.g. --wrt {name}=3, "
        "or --wrt {name} to start from the existing {name}",
        "zh": "{where}：'=' 后面没有值；例如写成 --wrt {name}=3，或写 --wrt {name} 使用已有的 {name}",
    },
    "err.wrt_commas": {
        "en": "{where}: separate --wrt items with spaces, not commas (--wrt u=3 v=4)",
        "zh": "{where}：多个 --wrt 变量之间用空格分隔，不要用逗号（--wrt u=3 v=4）",
    },
    "err.wrt_not_string": {
        "en": "wrt: expected 'name=value' strings, got {kind}",
        "zh": "wrt：需要 'name=value' 形式的字符串，收到的是 {kind}",
    },
    "err.wrt_nothing": {
        "en": "--wrt needs at least one name, e.g. --wrt x=3",
        "zh": "--wrt 后面至少要有一个变量，例如 --wrt x=3",
    },
    "err.wrt_twice": {
        "en": "--wrt: '{name}' is given twice; give each variable once",
        "zh": "--wrt：'{name}' 出现了两次；每个变量只写一次",
    },
    "err.unrecognized": {
        "en": "unrecognized arguments: {args} (see %%grad? for the flags)",
        "zh": "无法识别的参数：{args}（用 %%grad? 查看所有选项）",
    },
    "err.invalid_choice": {
        "en": "argument {flag}: invalid choice: {value} (choose from {choices})",
        "zh": "参数 {flag} 的值 {value} 无效（可选：{choices}）",
    },
    "err.invalid_value": {
        "en": "argument {flag}: {value} is not a valid {kind}",
        "zh": "参数 {flag}：{value} 不是有效的 {kind}",
    },
    "err.expected_value": {
        "en": "argument {flag}: expected a value after it",
        "zh": "参数 {flag} 后面需要一个值",
    },
    # ---- errors: values and settings ------------------------------------
    "err.dtype": {
        "en": "--dtype {value}: use one of float16, bfloat16, float32, float64",
        "zh": "--dtype {value}：请用 float16、bfloat16、float32 或 float64",
    },
    "err.device": {
        "en": "--device {value}: not a device name (try cpu or cuda)",
        "zh": "--device {value}：不是设备名（可以试试 cpu 或 cuda）",
    },
    "err.no_cuda": {
        "en": "--device {value}: CUDA is not available on this machine; use --device cpu",
        "zh": "--device {value}：这台机器上没有可用的 CUDA；请用 --device cpu",
    },
    "err.no_device": {
        "en": "--device {value}: this machine has no {kind} device; use --device cpu",
        "zh": "--device {value}：这台机器没有 {kind} 设备；请用 --device cpu",
    },
    "err.device_failed": {
        "en": "--device {value}: could not move the input there: {error}",
        "zh": "--device {value}：无法把输入放到该设备上：{error}",
    },
    "err.out_module": {
        "en": "--out {name}: {name} is a module in your namespace; choose another name, e.g. --out result",
        "zh": "--out {name}：{name} 是你命名空间里的模块；请换个名字，例如 --out result",
    },
    "err.bad_line": {
        "en": "cannot read the line '{line}' ({detail}); see %%grad? for the flags",
        "zh": "无法读取这一行 '{line}'（{detail}）；用 %%grad? 查看所有选项",
    },
    "err.wrt_undefined": {
        "en": "--wrt {name}: there is no variable '{name}' yet; give a starting value, e.g. --wrt {name}=3",
        "zh": "--wrt {name}：还没有名为 '{name}' 的变量；请给一个初始值，例如 --wrt {name}=3",
    },
    "err.wrt_syntax": {
        "en": "{where}: '{expr}' is not a valid Python expression",
        "zh": "{where}：'{expr}' 不是合法的 Python 表达式",
    },
    "err.wrt_name_error": {
        "en": "{where}: name '{missing}' is not defined",
        "zh": "{where}：名字 '{missing}' 未定义",
    },
    "err.wrt_raised": {
        "en": "{where}: computing the value raised {ename}: {error}",
        "zh": "{where}：计算这个值时出错 {ename}：{error}",
    },
    "err.wrt_int_tensor": {
        "en": "{where}: {name} would be an integer or boolean tensor ({dtype}), and only floating-point "
        "tensors can require grad; make it float (e.g. torch.arange(5.0) or .float())",
        "zh": "{where}：{name} 会是整数或布尔张量（{dtype}），只有浮点张量才能 requires_grad；"
        "请改成浮点数（例如 torch.arange(5.0) 或 .float()）",
    },
    "err.wrt_bool": {
        "en": "{where}: {name} is a boolean; gradients need numbers, e.g. --wrt {name}=1.0",
        "zh": "{where}：{name} 是布尔值；求梯度需要数值，例如 --wrt {name}=1.0",
    },
    "err.wrt_bool_values": {
        "en": "{where}: {name} holds booleans; gradients need numbers (use 0.0 and 1.0)",
        "zh": "{where}：{name} 里是布尔值；求梯度需要数值（请用 0.0 和 1.0）",
    },
    "err.wrt_type": {
        "en": "{where}: {name} is {kind}, not a number, list or tensor; "
        "e.g. --wrt {name}=3 or --wrt {name}=torch.linspace(-20, 20, 20)",
        "zh": "{where}：{name} 是 {kind}，不是数字、列表或张量；"
        "例如 --wrt {name}=3 或 --wrt {name}=torch.linspace(-20, 20, 20)",
    },
    "err.wrt_convert": {
        "en": "{where}: can't make a tensor from {kind}: {error}",
        "zh": "{where}：无法把 {kind} 变成张量：{error}",
    },
    # ---- errors: the cell and its output --------------------------------
    "err.cell_raised": {
        "en": "the cell raised {ename} (traceback above); no gradients were computed",
        "zh": "单元格出错 {ename}（见上面的 traceback）；没有计算梯度",
    },
    "err.cell_interrupted": {
        "en": "the cell was interrupted; no gradients were computed",
        "zh": "单元格被中断；没有计算梯度",
    },
    "err.report_interrupted": {
        "en": "interrupted while making the report; the cell itself ran to its end (its variables are set)",
        "zh": "生成报告时被中断；单元格本身已完整运行（其变量已设置）",
    },
    "err.complex": {
        "en": "{out} is complex; backward() needs a real number: differentiate {out}.abs() or {out}.real instead (--of)",
        "zh": "{out} 是复数；backward() 需要实数：请改为对 {out}.abs() 或 {out}.real 求导（--of）",
    },
    "err.backward_failed": {
        "en": "backward through {out} failed: {error}",
        "zh": "对 {out} 做 backward 失败：{error}",
    },
    "err.freed_by_cell": {
        "en": "no grads for {out}: the cell's own backward() freed the graph behind {out} (backward() frees "
        "what the graph saved, unless retain_graph=True), so it cannot be gone through again. Pass "
        "retain_graph=True to that backward() to see {out}'s grads too.",
        "zh": "{out} 没有梯度：单元格自己的 backward() 已释放 {out} 背后的计算图（backward() 会释放计算图保存的值，"
        "除非传 retain_graph=True），所以无法再走一遍。给那次 backward() 传 retain_graph=True，就也能看到 {out} 的梯度。",
    },
    "err.freed_earlier": {
        "en": "no grads for {out}: it is computed from {names}, and an earlier backward() freed the graph "
        "behind {names} ({out}.backward() fails the same way). Compute {names} again in this cell, or pass "
        "retain_graph=True to that backward().",
        "zh": "{out} 没有梯度：它由 {names} 算出，而之前的 backward() 已释放 {names} 背后的计算图"
        "（{out}.backward() 也会同样失败）。请在本单元格里重新计算 {names}，或给那次 backward() 传 "
        "retain_graph=True。",
    },
    "err.of_missing": {
        "en": "--of {name}: there is no variable '{name}' after the cell ran",
        "zh": "--of {name}：单元格运行后没有名为 '{name}' 的变量",
    },
    "err.of_not_tensor": {
        "en": "--of {name}: {name} is {kind}, not a tensor",
        "zh": "--of {name}：{name} 是 {kind}，不是张量",
    },
    "err.leaf_only": {
        "en": "{name} is a leaf and the cell computed nothing from it; add the function, e.g. y = 3 * {name} ** 2",
        "zh": "{name} 是叶子张量，但单元格没有用它计算任何东西；请加上函数，例如 y = 3 * {name} ** 2",
    },
    "steps.rule.relu": {
        "en": "∂L/∂{x} = g where {x} > 0, else 0",
        "zh": "∂L/∂{x} = g（{x} > 0 处），其余为 0",
    },
    "steps.rule.leaky_relu": {
        "en": "∂L/∂{x} = g where {x} > 0, else slope·g",
        "zh": "∂L/∂{x} = g（{x} > 0 处），其余为 slope·g",
    },
    "steps.rule.embedding": {
        "en": "∂L/∂weight = g added at the rows picked",
        "zh": "∂L/∂weight = g 加到被选中的行上",
    },
    "err.flag_repeated": {
        "en": "{flag} is given twice: give it once (the cell did not run)",
        "zh": "{flag} 写了两次：只写一次（单元格没有运行）",
    },
    "err.flag_twice": {
        "en": "{first} and {second} set the same thing: give it once (the cell did not run)",
        "zh": "{first} 和 {second} 设置的是同一项：只写一次（单元格没有运行）",
    },
    "err.quiz_explore": {
        "en": "--quiz with --explore: the explorer shows every answer (dy/dx at each x); use one of them",
        "zh": "--quiz 与 --explore 不能同时用：探索图会直接显示答案（每个 x 处的 dy/dx）；请只用其中一个",
    },
    "err.no_plot_with": {
        "en": "{flag} is for the figure, and --no-plot asks for none: drop one of them (the cell did not run)",
        "zh": "{flag} 用于图，而 --no-plot 要求不画图：请去掉其中一个（单元格没有运行）",
    },
    "err.grad_off": {
        "en": "grad mode is off (torch.set_grad_enabled(False) ran earlier), so PyTorch recorded no graph "
        "for {name}; turn it back on with torch.set_grad_enabled(True).",
        "zh": "梯度模式已关闭（之前运行过 torch.set_grad_enabled(False)），所以 PyTorch 没有为 {name} 记录计算图；"
        "请用 torch.set_grad_enabled(True) 重新打开。",
    },
    "note.hooks": {
        "en": "{names}: a hook (register_hook) can change the grads that pass through it; the grads shown "
        "({grads}) are what PyTorch computed with it, not necessarily the derivative of {out} itself: "
        "--check shows the derivative without it.",
        "zh": "{names}：有一个 hook（register_hook）可能改动经过它的梯度；表中的梯度（{grads}）是 PyTorch 带着 hook "
        "算出的值，不一定是 {out} 的导数本身：--check 会给出不带 hook 的导数。",
    },
    "note.hooks_not_run": {
        "en": "{names}: a hook (register_hook) is on the way back; the grads shown ({grads}) are the derivative "
        "of {out} itself, computed without running it. {out}.backward() would run it, and what reaches .grad "
        "may differ.",
        "zh": "{names}：反向路径上有一个 hook（register_hook）；表中的梯度（{grads}）是 {out} 的导数本身，计算时没有运行"
        "这个 hook。调用 {out}.backward() 会运行它，存进 .grad 的值可能不同。",
    },
    "note.wrt_copy": {
        "en": "--wrt {names}: the cell ran on a copy of {names} with requires_grad=True; your {names} and "
        "its .grad are as they were (the table shows the copy's).",
        "zh": "--wrt {names}：单元格用的是 {names} 的副本（requires_grad=True）；你的 {names} 及其 .grad 保持不变"
        "（表中是副本的）。",
    },
    "note.wrt_original_reached": {
        "en": "--wrt {name}: the cell ran on a copy of {name}, but its backward() also reached your own {name} "
        "through a tensor made from it before this cell (its .grad is now {grad}); the table shows the copy's "
        "grad only. Compute that tensor again in this cell, or leave out --wrt {name}, to see the whole derivative.",
        "zh": "--wrt {name}：单元格用的是 {name} 的副本，但它的 backward() 还经由之前用 {name} 算出的张量到达了你自己的 "
        "{name}（其 .grad 现在是 {grad}）；表中只有副本的梯度。要看到完整的导数，请在本单元格里重新计算那个张量，"
        "或去掉 --wrt {name}。",
    },
    "note.of_earlier": {
        "en": "--of {name}: the cell did not assign {name}; this {name} was left by an earlier cell.",
        "zh": "--of {name}：本单元格没有给 {name} 赋值；这个 {name} 是之前的单元格留下的。",
    },
    "err.no_path_no_grad": {
        "en": "{cut} was computed inside a {block} block, where autograd records nothing: {name} has no "
        "path back to {wrt}. Compute {cut} outside the block to get grads.",
        "zh": "{cut} 是在 {block} 块里算出来的，那里 autograd 什么都不记录：{name} 没有通向 {wrt} 的路径。"
        "在块外计算 {cut} 才能得到梯度。",
    },
    "err.no_path_detached": {
        "en": "{name} comes from {source}: detach() cuts the graph there, so {name} has no path back to {wrt}.",
        "zh": "{name} 来自 {source}：detach() 在那里切断了计算图，所以 {name} 没有通向 {wrt} 的路径。",
    },
    "err.no_path": {
        "en": "{name} does not depend on {wrt}: there is no path back to it; "
        "was it made with torch.tensor(...), .detach(), .item() or under torch.no_grad()?",
        "zh": "{name} 与 {wrt} 无关：计算图里没有通向它的路径；"
        "是不是用了 torch.tensor(...)、.detach()、.item()，或在 torch.no_grad() 里计算的？",
    },
    "note.unnamed_leaves": {
        "en": "backward() also filled .grad of leaf tensors behind {out} that have no name here ({count}: made "
        "inside an expression, or held where %%grad does not look: a property, a slot, a dict subclass); give "
        "one a name (w = …) to see it in the table.",
        "zh": "backward() 还填写了 {out} 背后 {count} 个在这里没有名字的叶子张量的 .grad（在表达式中创建，或放在 %%grad "
        "不查看的地方：property、slot、dict 子类）；给它起个名字（w = …）就能在表中看到。",
    },
    "err.unnamed_leaf": {
        "en": "{name} depends on leaf tensors that have no name here (made inside an expression, e.g. "
        "torch.randn(4, 5, requires_grad=True) * 1.0), so there is nothing to show the grads against; "
        "give the leaf a name (W = torch.randn(4, 5, requires_grad=True)), or use --wrt x=3.",
        "zh": "{name} 依赖的叶子张量在这里没有名字（在表达式中创建，例如 torch.randn(4, 5, requires_grad=True) * 1.0），"
        "所以无处显示梯度；请给叶子张量起个名字（W = torch.randn(4, 5, requires_grad=True)），或使用 --wrt x=3。",
    },
    "note.grad_returned": {
        "en": "the grad column is what torch.autograd.grad() returned; it stores nothing, so .grad is as it "
        "was: {listed}.",
        "zh": "grad 列是 torch.autograd.grad() 返回的值；它不写入 .grad，所以 .grad 保持原样：{listed}。",
    },
    "err.number_output": {
        "en": "{name} is a Python number ({value}), not a tensor, so autograd cannot follow it back to {leaf}: "
        ".item(), float() and the math module give plain numbers. Compute it with tensor operations "
        "(e.g. {name} = {leaf} ** 2) to differentiate it.",
        "zh": "{name} 是 Python 数字（{value}），不是张量，所以 autograd 无法沿它追溯到 {leaf}：.item()、float() 和 "
        "math 模块得到的都是普通数字。请用张量运算计算它（例如 {name} = {leaf} ** 2），才能对它求导。",
    },
    "err.no_leaf": {
        "en": "{name} does not depend on any leaf tensor that requires grad; "
        "create the input with requires_grad=True, or use --wrt x=3.",
        "zh": "{name} 不依赖任何 requires_grad 的叶子张量；请用 requires_grad=True 创建输入，或使用 --wrt x=3。",
    },
    "err.not_tensor": {
        "en": "{what} is of type {kind}, not a tensor; assign the tensor to differentiate (y = ...) or name it with --of",
        "zh": "{what} 的类型是 {kind}，不是张量；请把要求导的张量赋给变量（y = ...）或用 --of 指定",
    },
    "err.not_tensor_number": {
        "en": "{what} is of type {kind}, not a tensor (.item() and float() give a plain number, which has no graph); "
        "assign the tensor to differentiate (y = ...) or name it with --of",
        "zh": "{what} 的类型是 {kind}，不是张量（.item() 和 float() 得到的是普通数字，没有计算图）；"
        "请把要求导的张量赋给变量（y = ...）或用 --of 指定",
    },
    "err.no_output": {
        "en": "the cell made no tensor output: assign one (y = 3 * x ** 2) or end with an expression, "
        "or name it with --of",
        "zh": "单元格没有产生张量输出：请赋值一个（y = 3 * x ** 2），或以表达式结尾，或用 --of 指定",
    },
    "err.no_output_from": {
        "en": "the cell made no tensor output from {wrt}: assign one (y = 3 * x ** 2) or end with an "
        "expression, or name it with --of",
        "zh": "单元格没有用 {wrt} 算出任何张量：请赋值一个（y = 3 * x ** 2），或以表达式结尾，或用 --of 指定",
    },
    # ---- beyond first derivatives --------------------------------------
    "rec.escapes": {
        "en": "the cell turned tracked values into Python values ({calls}); what is computed from them is a "
        "constant for autograd, and so for --check, --plot and --symbolic.",
        "zh": "单元格把被跟踪的张量变成了 Python 值（{calls}）；由它们算出的东西对 autograd 来说是常数，"
        "对 --check、--plot、--symbolic 也一样。",
    },
    "rec.escapes_plot": {
        "en": "the cell turned tracked values into Python values ({calls}); what is computed from them is a "
        "constant for autograd (and for --check and --symbolic), so the plot shows only the point and its "
        "tangent: away from the point the function may differ.",
        "zh": "单元格把被跟踪的张量变成了 Python 值（{calls}）；由它们算出的东西对 autograd 来说是常数"
        "（对 --check、--symbolic 也一样），所以图中只画出该点和切线：离开该点后函数可能不同。",
    },
    "rec.branches": {
        "en": "values left the computation as Python values (.item(), float(), if on a tensor), so the plot shows "
        "only the point and its tangent: away from the point the function may differ.",
        "zh": "有值以 Python 值的形式离开了计算（.item()、float()、对张量用 if），所以图中只画出该点和切线："
        "离开该点后函数可能不同。",
    },
    "rec.view": {
        "en": "the cell changed a tensor in place through a view, which the record of {out}'s computation cannot "
        "follow; --check, --plot, --symbolic and higher derivatives are left out.",
        "zh": "单元格通过视图原地修改了张量，{out} 的计算记录无法跟踪；省略 --check、--plot、--symbolic 和高阶导数。",
    },
    "rec.too_big": {
        "en": "the cell's computation is too big to record (over 512 MB of tensors); --check, --plot, --symbolic and "
        "higher derivatives are left out.",
        "zh": "单元格的计算太大，无法记录（张量超过 512 MB）；省略 --check、--plot、--symbolic 和高阶导数。",
    },
    "rec.changed": {
        "en": "a tensor that {out} was computed from was changed in place later in the cell, so its recorded "
        "computation cannot be evaluated again; --check, --plot, --symbolic and higher derivatives are left out.",
        "zh": "计算 {out} 用到的某个张量后来在单元格里被原地修改，记录的计算无法再次求值；"
        "省略 --check、--plot、--symbolic 和高阶导数。",
    },
    "rec.no_output": {
        "en": "{out} was not computed by torch operations from the leaves while the cell ran, so there is nothing "
        "to evaluate again; --check, --plot, --symbolic and higher derivatives are left out.",
        "zh": "{out} 不是在单元格运行时由叶子张量经 torch 运算算出的，没有可重新求值的计算；"
        "省略 --check、--plot、--symbolic 和高阶导数。",
    },
    "rec.mismatch": {
        "en": "the recorded computation of {out} does not give what autograd computed in the cell (it changes "
        "something the record cannot see), so --check, --plot, --symbolic and higher derivatives are left out "
        "rather than shown wrong.",
        "zh": "{out} 的记录计算与单元格里 autograd 的结果不一致（单元格改动了记录看不到的东西），"
        "为避免给出错误数字，省略 --check、--plot、--symbolic 和高阶导数。",
    },
    "rec.earlier": {
        "en": "{out} is computed from {names}, which an earlier cell computed from the leaves: this cell's record "
        "starts at {names}, so --check, --plot curves, --symbolic and higher derivatives, which evaluate it, "
        "are left out (the grads in the table are autograd's, through {names}). Run the cell that makes "
        "{names} and this one as one cell to have them.",
        "zh": "{out} 由 {names} 算出，而 {names} 是之前的单元格由叶子张量算出的：本单元格的记录从 {names} 开始，"
        "所以依赖这份记录的 --check、--plot 曲线、--symbolic 和高阶导数不显示（表中的梯度是 autograd 经过 "
        "{names} 算出的）。把生成 {names} 的单元格和这个单元格合成一个来运行，就能看到它们。",
    },
    "rec.grads_differ": {
        "en": "autograd's grads of {out} in the cell differ from the derivative of the computation recorded for it "
        "(a custom autograd.Function, a hook that changes grads, or .data/.detach() tricks): --check compares "
        "autograd's grads with finite differences; --plot curves, --symbolic and higher derivatives are left out.",
        "zh": "单元格里 autograd 算出的 {out} 的梯度，与记录下的计算的导数不一致（自定义 autograd.Function、"
        "修改梯度的 hook，或 .data/.detach() 技巧）：--check 会把 autograd 的梯度与有限差分比较；"
        "省略 --plot 曲线、--symbolic 和高阶导数。",
    },
    "rec.grads_agree": {
        "en": "the recorded computation of {out} cannot follow how the cell got its grads (a custom "
        "autograd.Function, or a hook), so --check compared autograd's grads with finite differences "
        "directly; --plot curves, --symbolic and higher derivatives are left out.",
        "zh": "记录下的 {out} 的计算无法复现单元格得到梯度的方式（自定义 autograd.Function 或 hook），"
        "所以 --check 直接把 autograd 的梯度与有限差分比较；省略 --plot 曲线、--symbolic 和高阶导数。",
    },
    "rec.failed": {
        "en": "the recorded computation could not be evaluated again ({error}); --check, --plot, --symbolic and "
        "higher derivatives are left out.",
        "zh": "记录的计算无法再次求值（{error}）；省略 --check、--plot、--symbolic 和高阶导数。",
    },
    "calc.cannot": {"en": "{error}", "zh": "{error}（高阶导数）"},
    "calc.complex": {
        "en": "--order, --hessian, --jacobian and --symbolic work on real inputs; the input here is complex.",
        "zh": "--order、--hessian、--jacobian 和 --symbolic 只适用于实数输入；这里的输入是复数。",
    },
    "check.cut": {
        "en": "the computation of {out} passes through .detach()/.data or torch.no_grad(): autograd treats that part "
        "as a constant, finite differences do not. The difference comes from that cut, not from an autograd error.",
        "zh": "{out} 的计算经过了 .detach()/.data 或 torch.no_grad()：autograd 把那部分当作常数，有限差分则不会。"
        "差异来自这个切断，而不是 autograd 的错误。",
    },
    "check.directions": {
        "en": "{name} has {count} elements; the check compared {used} random directions (as gradcheck's fast mode "
        "does): its row shows the derivative along each direction u ({name}.grad · u), not {name}.grad.",
        "zh": "{name} 有 {count} 个元素；检验比较了 {used} 个随机方向（与 gradcheck 的快速模式相同）："
        "它那一行是沿每个方向 u 的方向导数（{name}.grad · u），不是 {name}.grad 本身。",
    },
    "check.along": {"en": "{name} along {count} directions", "zh": "{name}（沿 {count} 个方向）"},
    "check.at_kink": {"en": "kink: see note", "zh": "不可导点：见注释"},
    "calc.bad_order": {
        "en": "--order {order}: use a whole number from 1 to 10",
        "zh": "--order {order}：请用 1 到 10 之间的整数",
    },
    "calc.order_mixed": {
        "en": "{out} does not work element by element on {x}: d²{out}/d{x}² here is ∂²{out}/∂{x}ᵢ² for "
        "each element (the Hessian's diagonal; its mixed partials ∂²{out}/∂{x}ᵢ∂{x}ⱼ are not 0 and not "
        "shown).",
        "zh": "{out} 不是对 {x} 逐元素计算的：这里的 d²{out}/d{x}² 是每个元素的 ∂²{out}/∂{x}ᵢ²"
        "（Hessian 矩阵的对角线；不为 0 的混合偏导数 ∂²{out}/∂{x}ᵢ∂{x}ⱼ 没有显示）。",
    },
    "calc.order_mixed_stop": {
        "en": "{out} does not work element by element on {x}: d²{out}/d{x}² here is ∂²{out}/∂{x}ᵢ² for "
        "each element (the Hessian's diagonal; its mixed partials ∂²{out}/∂{x}ᵢ∂{x}ⱼ are not 0 and not "
        "shown), and no higher order is shown.",
        "zh": "{out} 不是对 {x} 逐元素计算的：这里的 d²{out}/d{x}² 是每个元素的 ∂²{out}/∂{x}ᵢ²"
        "（Hessian 矩阵的对角线；不为 0 的混合偏导数 ∂²{out}/∂{x}ᵢ∂{x}ⱼ 没有显示），更高阶也不显示。",
    },
    "calc.order_from": {
        "en": "from order {k} on, {out}'s derivatives mix the elements of {x} (the grad of the sum is no "
        "longer ∂ᵏ{out}/∂{x}ᵢᵏ): orders {k} and up are not shown.",
        "zh": "从第 {k} 阶起，{out} 的导数会混合 {x} 的各个元素（求和后的梯度不再是 ∂ᵏ{out}/∂{x}ᵢᵏ）："
        "第 {k} 阶及以上不显示。",
    },
    "calc.order_big": {
        "en": "{out} does not work element by element on {x}, and {x} has too many elements to take "
        "second derivatives one by one ({limit:,} at most): no order above 1 is shown for it.",
        "zh": "{out} 不是对 {x} 逐元素计算的，且 {x} 的元素太多，无法逐个求二阶导数（最多 {limit:,} 个）："
        "不显示它的一阶以上导数。",
    },
    "calc.hessian_scalars": {
        "en": "--hessian needs scalar inputs; {names} not a scalar (use torch.func.hessian for tensors)",
        "zh": "--hessian 需要标量输入；{names} 不是标量（张量请用 torch.func.hessian）",
    },
    "calc.hessian_title": {"en": "Hessian of {out}", "zh": "{out} 的 Hessian 矩阵"},
    "calc.jacobian_title": {
        "en": "Jacobian of {out} ({rows}×{cols}: rows are the elements of {out}, columns the elements of {inputs})",
        "zh": "{out} 的 Jacobian 矩阵（{rows}×{cols}：行是 {out} 的元素，列是 {inputs} 的元素）",
    },
    "calc.jacobian_note": {
        "en": "--jacobian shows every {pairs}; the grad column is what {out}.sum().backward() gives, the sum of "
        "each column.",
        "zh": "--jacobian 给出每个 {pairs}；表中 grad 列是 {out}.sum().backward() 的结果，即每列之和。",
    },
    "calc.jacobian_too_big": {
        "en": "--jacobian: {rows}×{cols} is too big to show ({limit} entries at most); use fewer points",
        "zh": "--jacobian：{rows}×{cols} 太大，无法显示（最多 {limit} 个元素）；请减少点数",
    },
    "check.title": {
        "en": "check against central differences in float64 (step {step})",
        "zh": "用 float64 中心差分检验（步长 {step}）",
    },
    "check.col.numeric": {"en": "numeric", "zh": "数值差分"},
    "check.col.error": {"en": "max error", "zh": "最大误差"},
    "check.col.result": {"en": "result", "zh": "结果"},
    "check.pass": {"en": "pass", "zh": "通过"},
    "check.fail": {"en": "FAIL", "zh": "不通过"},
    "check.kink": {
        "en": "{out} is not differentiable at {name} = {point}: the slope is {right} from the right and {left} "
        "from the left. autograd reports {auto}, PyTorch's convention at such a point.",
        "zh": "{out} 在 {name} = {point} 处不可导：右侧斜率是 {right}，左侧斜率是 {left}。"
        "autograd 给出 {auto}，这是 PyTorch 在这种点上的约定。",
    },
    "check.kink_outside": {
        "en": "{out} is not differentiable at {name} = {point}: the slope is {right} from the right and {left} "
        "from the left. autograd reports {auto}, outside both: no side's slope.",
        "zh": "{out} 在 {name} = {point} 处不可导：右侧斜率是 {right}，左侧斜率是 {left}。"
        "autograd 给出 {auto}，不在两者之间：不是任何一侧的斜率。",
    },
    "check.kink_along": {
        "en": "{out} is not differentiable here along one of the random directions of {name}: the slope is "
        "{right} one way and {left} the other (an element at a kink, like relu's or abs's 0). autograd "
        "reports {auto} along it, between the two: PyTorch's convention at such a point.",
        "zh": "{out} 在这里沿 {name} 的某个随机方向不可导：一侧斜率是 {right}，另一侧是 {left}"
        "（某个元素正处在折点上，比如 relu 或 abs 的 0）。autograd 沿这个方向给出 {auto}，在两者之间："
        "这是 PyTorch 在这种点上的约定。",
    },
    "check.kink_along_outside": {
        "en": "{out} is not differentiable here along one of the random directions of {name}: the slope is "
        "{right} one way and {left} the other. autograd reports {auto} along it, outside both: no side's slope.",
        "zh": "{out} 在这里沿 {name} 的某个随机方向不可导：一侧斜率是 {right}，另一侧是 {left}。"
        "autograd 沿这个方向给出 {auto}，不在两者之间：不是任何一侧的斜率。",
    },
    "check.sampled": {
        "en": "{name} has {count} elements; the check used {used} of them.",
        "zh": "{name} 有 {count} 个元素；检验只用了其中 {used} 个。",
    },
    "check.cannot": {
        "en": "--check could not evaluate the recorded computation in float64 ({error}).",
        "zh": "--check 无法用 float64 对记录的计算求值（{error}）。",
    },
    "expect.bad": {
        "en": "--expect {value}: write --expect 38 (one input) or --expect u=43 v=20",
        "zh": "--expect {value}：请写成 --expect 38（一个输入）或 --expect u=43 v=20",
    },
    "expect.unknown": {
        "en": "--expect {name}=...: {name} is not one of the inputs ({inputs})",
        "zh": "--expect {name}=...：{name} 不是输入变量之一（{inputs}）",
    },
    "expect.one_input": {
        "en": "--expect {value}: there are {count} inputs; name them: --expect {example}",
        "zh": "--expect {value}：有 {count} 个输入，请写明变量名：--expect {example}",
    },
    "expect.one_value": {
        "en": "--expect {value}: one value for the one input {name}, e.g. --expect 18 or --expect {name}=18",
        "zh": "--expect {value}：只有一个输入 {name}，请写一个值，例如 --expect 18 或 --expect {name}=18",
    },
    "expect.failed": {
        "en": "not as expected: {lines}",
        "zh": "与预期不符：{lines}",
    },
    "expect.line": {
        "en": "{d}{out}/{d}{name}: expected {expected}, got {got}",
        "zh": "{d}{out}/{d}{name}：预期 {expected}，实际 {got}",
    },
    "expect.ok": {"en": "as expected: {lines}", "zh": "符合预期：{lines}"},
    "extras.refused": {
        "en": "{error} (the cell ran; this part of the report is left out).",
        "zh": "{error}（单元格已运行；报告的这一部分没有给出）。",
    },
    "expect.not_graded": {
        "en": "{reason} (the cell ran; nothing was graded).",
        "zh": "{reason}（单元格已运行；没有评判）。",
    },
    "sym.cannot": {
        "en": "no symbolic answer: the cell is not plain arithmetic with elementwise torch functions ({error}).",
        "zh": "无法给出符号解：单元格不是由算术和逐元素 torch 函数组成的（{error}）。",
    },
    "sym.scalars_only": {
        "en": "no symbolic answer: --symbolic works with real scalar inputs, and {names} is not one "
        "(--wrt x=3 gives one).",
        "zh": "无法给出符号解：--symbolic 只接受实数标量输入，而 {names} 不是（--wrt x=3 就是一个）。",
    },
    "sym.missing": {
        "en": "--symbolic needs SymPy, which is not installed: pip install 'torchgrad-magic[symbolic]'.",
        "zh": "--symbolic 需要 SymPy，但它没有安装：请运行 pip install 'torchgrad-magic[symbolic]'。",
    },
    "sym.line": {
        "en": "{top}/{bottom} = {expr} = {value} at {point}",
        "zh": "{top}/{bottom} = {expr} = {value}（在 {point} 处）",
    },
    "sym.mismatch": {
        "en": "SymPy gives {symbolic} for {d}{out}/{d}{name} but autograd gives {auto}.",
        "zh": "SymPy 算出 {d}{out}/{d}{name} = {symbolic}，autograd 给出 {auto}，两者不一致。",
    },
    "sym.mismatch_kink": {
        "en": "SymPy gives {symbolic} for {d}{out}/{d}{name} but autograd gives {auto}: at {at} {out} has a kink "
        "(no derivative), and the two pick different values there (SymPy's Heaviside(0) is 1/2; PyTorch takes one "
        "side).",
        "zh": "SymPy 算出 {d}{out}/{d}{name} = {symbolic}，autograd 给出 {auto}：{out} 在 {at} 处是折点（不可导），"
        "两者在这里取的值不同（SymPy 的 Heaviside(0) 是 1/2；PyTorch 取一侧的值）。",
    },
    "sym.mismatch_heaviside": {
        "en": "SymPy gives {symbolic} for {d}{out}/{d}{name} there: its Heaviside(0) is 1/2.",
        "zh": "SymPy 在那里给出 {d}{out}/{d}{name} = {symbolic}：它的 Heaviside(0) 是 1/2。",
    },
    # ---- plain-language help for PyTorch's autograd errors ----------------
    "hint.prefix": {"en": "what it means: {hint}", "zh": "这是什么意思：{hint}"},
    "hint.scalar_outputs": {
        "en": "backward() without an argument needs a single number. Use y.sum().backward(), or "
        "y.backward(torch.ones_like(y)); or drop the call and let %%grad sum it.",
        "zh": "不带参数的 backward() 只能用于标量。请用 y.sum().backward() 或 y.backward(torch.ones_like(y))；"
        "也可以去掉这个调用，让 %%grad 自动求和。",
    },
    "hint.second_time": {
        "en": "the first backward() freed the values the graph saved. Recompute the output before calling "
        "backward() again, or pass retain_graph=True to the first call.",
        "zh": "第一次 backward() 已经释放了计算图保存的中间值。再次调用前请重新计算输出，"
        "或在第一次调用时传入 retain_graph=True。",
    },
    "hint.float_only": {
        "en": "only floating-point tensors can require grad: write torch.tensor(3.0, requires_grad=True), "
        "not torch.tensor(3, ...).",
        "zh": "只有浮点张量才能 requires_grad：请写 torch.tensor(3.0, requires_grad=True)，"
        "而不是 torch.tensor(3, ...)。",
    },
    "hint.leaf_inplace": {
        "en": "a leaf that requires grad cannot be changed in place (x += 1, x[0] = 0). Write x2 = x + 1, "
        "or change it under torch.no_grad().",
        "zh": "requires_grad 的叶子张量不能原地修改（x += 1、x[0] = 0）。请写 x2 = x + 1，"
        "或在 torch.no_grad() 里修改。",
    },
    "hint.modified_inplace": {
        "en": "a tensor that backward() needs was changed in place after it was used. Use out-of-place "
        "operations (y = y * 2 instead of y *= 2), or .clone() it first.",
        "zh": "backward() 需要的某个张量在使用后被原地修改了。请改用非原地运算（y = y * 2 而不是 y *= 2），"
        "或先 .clone()。",
    },
    "hint.no_grad_fn": {
        "en": "the output is not connected to any tensor with requires_grad=True. Set requires_grad=True on "
        "the input (or use --wrt x=3), and avoid .detach(), .item() and torch.no_grad() on the way.",
        "zh": "输出没有连到任何 requires_grad=True 的张量。请给输入设置 requires_grad=True（或用 --wrt x=3），"
        "计算过程中不要用 .detach()、.item() 或 torch.no_grad()。",
    },
    "hint.numpy": {
        "en": "a tensor that requires grad cannot become a NumPy array directly: call .detach().numpy(), "
        "as the tutorial does before plotting.",
        "zh": "requires_grad 的张量不能直接转成 NumPy 数组：请调用 .detach().numpy()，教程画图前就是这样做的。",
    },
    # ---- %%grad? help ---------------------------------------------------
    "help.body": {
        "en": """Run the cell, differentiate its output, and show every tensor's
data, grad, grad_fn, is_leaf and requires_grad in one table.

Example::

    %%grad --wrt x=3
    y = 3 * x ** 2

shows x = 3 with grad 18 and y = 27 (grad_fn MulBackward0, not a leaf).

The cell runs exactly once, as it would without %%grad (same prints,
Out[], variables, .grad values, graph and random state); %%grad only
adds the report. When the cell calls backward() or
torch.autograd.grad() itself, the grads shown are the ones that call
computed, caught at that moment (later steps, zero_grad() or
w.grad = None do not change them). Otherwise %%grad computes them
without writing your tensors' .grad or freeing the graph. The output
is the tensor named by --of; else the one the cell called backward()
on; else the cell's last expression; else the last assigned tensor
that depends on the leaves. A non-scalar output is summed. A cell with
nothing to differentiate runs and gets a note. --wrt leaves are new
every time; a bare --wrt NAME leaves your own NAME untouched. A
trailing ';' on the magic line works like -q.
--plot draws the output and its derivative (a 1-D input, or f and
f' around scalar points with the tangent); in a terminal use --save.
--order/--hessian/--jacobian go beyond the first derivative, --check
compares with finite differences, --symbolic with SymPy: all of them
evaluate the computation recorded during the one run, never the cell
again. --expect turns the grads into a test, --graph draws the
backward graph, --steps works out the chain rule step by step with
the numbers autograd itself passed between its nodes.
Defaults: %config GradMagic (language, dtype, digits, max_items, plot).""",
        "zh": """运行单元格，对输出求导，并在一张表里列出每个张量的
data、grad、grad_fn、is_leaf 和 requires_grad。

示例::

    %%grad --wrt x=3
    y = 3 * x ** 2

显示 x = 3、梯度 18，以及 y = 27（grad_fn 为 MulBackward0，不是叶子）。

单元格只运行一次，与不加 %%grad 时完全相同（同样的输出、Out[]、变量、
.grad、计算图和随机数状态）；%%grad 只是多给出一份报告。单元格自己调用
backward() 或 torch.autograd.grad() 时，表中的梯度就是那次调用当时算出的
值（之后的 step()、zero_grad() 或 w.grad = None 不会改变它们）；否则
%%grad 自己计算梯度，但不写入你的张量的 .grad，也不释放计算图。输出依次
取：--of 指定的张量；单元格调用 backward() 的张量；单元格的最后一个
表达式；最后赋值且依赖输入的张量。非标量输出先求和。没有可求导内容的
单元格照常运行，并给出一条提示。--wrt 的叶子每次都是新建的；只写
--wrt NAME 时，你自己的 NAME 保持不变。魔法行末尾加 ';' 与 -q 相同。
--plot 画出输出和导数（一维输入，或标量点附近的 f、f' 和切线）；终端
里请用 --save。--order/--hessian/--jacobian 求更高阶的导数，--check 与
有限差分比较，--symbolic 与 SymPy 比较，--expect 把梯度变成检查，
--graph 画出反向计算图，--steps 用 autograd 节点之间实际传递的数逐步展开
链式法则。--check、--plot、--symbolic 和高阶导数都是对那一次
运行中记录下的计算求值，不会再次运行单元格。
默认值：%config GradMagic（language、dtype、digits、max_items、plot）。""",
    },
    "help.wrt": {
        "en": "variables to differentiate with respect to: name=value makes a fresh leaf tensor (value is any "
        "Python expression, spaces allowed: x=torch.linspace(-20, 20, 20)); a bare name starts from a copy of "
        "the existing variable; a model's parameter or a tensor in a list or dict (net.0.weight, params[0]) is "
        "used in place. Without --wrt, the cell's own leaf tensors (requires_grad=True) are used.",
        "zh": "求导的自变量：name=value 新建一个叶子张量（值可以是任意 Python 表达式，可含空格：x=torch.linspace(-20, 20, 20)）；"
        "只写 name 时复制已有变量作为起点；模型参数或列表、字典中的张量（net.0.weight、params[0]）原地使用。"
        "不写 --wrt 时，使用单元格自己创建的叶子张量（requires_grad=True）。",
    },
    "help.of": {
        "en": "the output to differentiate (default: see above)",
        "zh": "要求导的输出（默认规则见上文）",
    },
    "help.retain_grad": {
        "en": "keep and show the grads of the cell's named intermediate tensors",
        "zh": "保留并显示单元格中有名字的中间张量的梯度",
    },
    "help.dtype": {
        "en": "dtype of the --wrt leaves and the default dtype inside the cell (default: GradMagic.dtype, "
        "else PyTorch's default, float32)",
        "zh": "--wrt 叶子张量的 dtype，也是单元格运行时的默认 dtype（默认：GradMagic.dtype，否则用 PyTorch 默认的 float32）",
    },
    "help.device": {
        "en": "device of the --wrt leaves, e.g. cpu or cuda",
        "zh": "--wrt 叶子张量所在的设备，例如 cpu 或 cuda",
    },
    "help.plot": {
        "en": "draw the output and its derivative: against a 1-D input, or around scalar points with the tangent "
        "(default: GradMagic.plot)",
        "zh": "画出输出和导数：一维输入时画随输入的变化，标量输入时在该点附近画出并加切线（默认：GradMagic.plot）",
    },
    "help.range": {
        "en": "the window of --plot around scalar points, e.g. --range -2:5; implies --plot",
        "zh": "标量点的作图区间，例如 --range -2:5；隐含 --plot",
    },
    "help.save": {
        "en": "write the figure to FILE (.png or .svg); implies --plot",
        "zh": "把图保存到 FILE（.png 或 .svg）；隐含 --plot",
    },
    "help.order": {
        "en": "also show derivatives up to order N (d²y/dx² ...)",
        "zh": "同时给出直到 N 阶的导数（d²y/dx² 等）",
    },
    "help.hessian": {
        "en": "the matrix of second partials (scalar --wrt inputs)",
        "zh": "二阶偏导组成的 Hessian 矩阵（--wrt 为标量时）",
    },
    "help.jacobian": {
        "en": "every d out[i]/d in[j] of a vector output, not just the sum",
        "zh": "向量输出的每个 d out[i]/d in[j]，而不只是求和后的梯度",
    },
    "help.check": {
        "en": "compare with central differences in float64: pass/fail",
        "zh": "用 float64 中心差分检验：通过/不通过",
    },
    "help.symbolic": {
        "en": "SymPy's derivative beside autograd's number",
        "zh": "在 autograd 结果旁给出 SymPy 推出的导数",
    },
    "help.expect": {
        "en": "the grads you expect: --expect 38, or --expect u=43 v=20; a mismatch is an error (so a notebook "
        "run in CI fails), a match prints one line instead of the report",
        "zh": "预期的梯度：--expect 38 或 --expect u=43 v=20；不符时报错（CI 中运行笔记本会失败），符合时只打印一行",
    },
    "help.graph": {
        "en": "the backward graph from the output to the leaves with names, values and grads (--graph full: "
        "also what each node saved; a model's modules are folded into one box per layer, --graph 2 unfolds "
        "one level deeper, --graph full shows every operation; the same ops repeated one after another, "
        "as a loop makes them, are one box × N, --graph unfold draws each of them)",
        "zh": "从输出到叶子的反向计算图，标出名字、数值和梯度（--graph full：另加每个节点保存的值；"
        "模型的每一层折叠成一个方框，--graph 2 再展开一层，--graph full 显示每个运算；循环产生的一再重复的"
        "同样运算合成一个 × N 的方框，--graph unfold 逐个画出）",
    },
    "help.options": {"en": "options", "zh": "选项"},
    "help.times_input": {
        "en": "add a grad×input column (an input-sensitivity score)",
        "zh": "增加一列 grad×input（输入敏感度分数）",
    },
    "help.lang": {
        "en": "language of this cell's report (default: GradMagic.language)",
        "zh": "本单元格报告的语言（默认：GradMagic.language）",
    },
    "help.out": {
        "en": "store the result object (.grads, .output, ...) in NAME",
        "zh": "把结果对象（.grads、.output 等）存进变量 NAME",
    },
    "help.quiet": {"en": "show nothing (use with --out)", "zh": "不显示任何内容（配合 --out 使用）"},
    "rec.cannot_follow": {
        "en": "the record of {out}'s computation could not follow this cell (torch.func transforms, "
        "inference mode or tensors without storage): the extras that evaluate it are left out",
        "zh": "无法记录 {out} 的计算过程（torch.func 变换、inference mode 或没有存储的张量）：需要它的附加项略去",
    },
    "extras.withheld": {
        "en": "--check, --plot and the other extras need those grads too, so they are left out.",
        "zh": "--check、--plot 等附加项也需要这些梯度，所以都略去了。",
    },
    "note.no_backward_defined": {
        "en": "{out} was made through {what}, an autograd.Function that defines no backward(): "
        "{out}.backward() would raise NotImplementedError, so there are no grads to show.",
        "zh": "{out} 经过了 {what}，这是一个没有定义 backward() 的 autograd.Function："
        "{out}.backward() 会抛出 NotImplementedError，所以没有梯度可显示。",
    },
    "note.users_backward": {
        "en": "{out}'s backward pass runs your own Python code ({what}); %%grad does not run it for you "
        "(a plain cell would not), so no grads are shown: call {out}.backward() in the cell to see them",
        "zh": "{out} 的反向传播会运行你自己的 Python 代码（{what}）；%%grad 不替你运行它（普通单元格也不会运行），"
        "所以不显示梯度：请在单元格里调用 {out}.backward() 来查看",
    },
    "word.module_hook": {"en": "a module's backward hook", "zh": "模块的反向钩子"},
    # ---- models ------------------------------------------------------------
    "err.wrt_no_param": {
        "en": "--wrt {name}: {head} has no parameter or attribute {rest}; its parameters are listed by "
        "[n for n, _ in {head}.named_parameters()]",
        "zh": "--wrt {name}：{head} 没有叫 {rest} 的参数或属性；可用 [n for n, _ in {head}.named_parameters()] 查看",
    },
    "err.wrt_not_param": {
        "en": "--wrt {name}: not a leaf tensor that requires grad (a model's parameter), so it cannot be "
        "tracked in place; to start from a copy of a value, give it a name: --wrt w=EXPRESSION",
        "zh": "--wrt {name}：它不是需要梯度的叶子张量（模型参数），不能原地跟踪；"
        "要从某个值的副本开始，请给它起个名字：--wrt w=表达式",
    },
    "model.col.param": {"en": "parameter", "zh": "参数"},
    "model.col.module": {"en": "module", "zh": "模块"},
    "model.col.shape": {"en": "shape", "zh": "形状"},
    "model.col.norm": {"en": "grad norm", "zh": "梯度范数"},
    "model.col.zeros": {"en": "zeros", "zh": "零的比例"},
    "model.frozen": {"en": "frozen (requires_grad=False)", "zh": "已冻结（requires_grad=False）"},
    "model.no_grad": {"en": "None (no path to the output)", "zh": "None（与输出之间没有路径）"},
    "model.more": {"en": "… {count} more parameters", "zh": "…… 另有 {count} 个参数"},
    "model.params": {"en": "{count} param.", "zh": "{count} 个参数"},
    "model.summary": {
        "en": "modules: {modules}; their parameter tensors: {params} ({values} values); with grads: {trained}",
        "zh": "{modules} 个模块中共 {params} 个参数张量（{values} 个数），其中 {trained} 个有梯度",
    },
    "model.fold_text": {
        "en": "(per module; result.model.params has each of the {count} parameters)",
        "zh": "（按模块汇总；result.model.params 里有全部 {count} 个参数）",
    },
    "model.all_params": {"en": "every parameter ({count})", "zh": "全部参数（{count} 个）"},
    "model.all_zero": {
        "en": "{module} ({kind}): every grad is exactly 0, so this layer does not learn from this batch "
        "(a ReLU before it that is never active, a detached branch, or an output that does not use it).",
        "zh": "{module}（{kind}）：所有梯度都恰好为 0，这一层在这批数据上学不到东西"
        "（前面的 ReLU 从不激活、分支被 detach，或输出没有用到它）。",
    },
    "model.non_finite": {
        "en": "{module} ({kind}): grads contain nan or inf (exploding values, a log of 0, a division by 0).",
        "zh": "{module}（{kind}）：梯度里有 nan 或 inf（数值爆炸、对 0 取对数或除以 0）。",
    },
    "model.changed_note": {
        "en": "{names}: the cell (or later code) changed these grads in place after the call (.grad.zero_(), "
        "clip_grad_norm_, zero_grad(set_to_none=False)); they are too big to copy at every call, so their "
        "numbers are not shown. Look at them before changing them, or use zero_grad() (it sets them to None).",
        "zh": "{names}：单元格（或之后的代码）在调用后原地改动了这些梯度（.grad.zero_()、clip_grad_norm_、"
        "zero_grad(set_to_none=False)）；它们太大，无法每次都复制，所以不显示数值。请在改动前查看，或用 "
        "zero_grad()（它把梯度设为 None）。",
    },
    "model.frozen_note": {
        "en": "frozen (requires_grad=False, no grads): {names}",
        "zh": "已冻结（requires_grad=False，没有梯度）：{names}",
    },
    "model.headline": {
        "en": "{out} = {value}; grads of {count} parameters",
        "zh": "{out} = {value}；{count} 个参数的梯度",
    },
    # ---- grad states in the table ------------------------------------------
    "state.no_path": {"en": "None (no path to the output)", "zh": "None（与输出之间没有路径）"},
    "state.none_came": {
        "en": "None (on the path, but no grad reached it)",
        "zh": "None（在路径上，但没有梯度传到它）",
    },
    "state.not_asked": {
        "en": "None (on the path, not asked for)",
        "zh": "None（在路径上，但没有要求计算）",
    },
    "state.not_leaf": {"en": "None (not a leaf: not kept)", "zh": "None（不是叶子：不保留）"},
    "state.retained_empty": {
        "en": "None (retain_grad(): kept once backward() runs)",
        "zh": "None（已 retain_grad()：backward() 之后才有）",
    },
    "state.withheld": {"en": "not computed (see the note)", "zh": "未计算（见提示）"},
    "state.no_grad": {"en": "None (requires_grad=False)", "zh": "None（requires_grad=False）"},
    "state.added": {
        "en": "{value} (added up over {count} backward() calls)",
        "zh": "{value}（{count} 次 backward() 累加）",
    },
    "state.added_before": {
        "en": "{value} (this call's grad added to what .grad held before)",
        "zh": "{value}（本次梯度加到了 .grad 原有的值上）",
    },
    "state.added_before_many": {
        "en": "{value} ({count} backward() calls here, added to what .grad held before)",
        "zh": "{value}（本单元格 {count} 次 backward()，加到了 .grad 原有的值上）",
    },
    # ---- --steps: the chain rule ------------------------------------------
    "help.steps": {
        "en": "show the chain rule step by step with autograd's own numbers: each backward node, "
        "its local derivative and the gradient it sends on",
        "zh": "用 autograd 自己算出的数逐步展示链式法则：每个反向节点、它的局部导数和它向下传的梯度",
    },
    "steps.title": {
        "en": "chain rule, step by step: how autograd got the grads of {out}",
        "zh": "链式法则逐步展开：autograd 如何算出 {out} 的梯度",
    },
    "steps.forward": {"en": "forward (in code order):", "zh": "前向计算（按代码顺序）："},
    "steps.made_up": {
        "en": "({names}: names made up here for results the cell did not name)",
        "zh": "（{names}：单元格没有命名的中间结果，这里临时起的名字）",
    },
    "steps.weighted": {
        "en": "--steps follows one output from d(out)/d(out) = 1; the cell's call differentiated {label} "
        "(weights or several outputs), so the steps are left out: differentiate one output in its own call to see them.",
        "zh": "--steps 从一个输出的 d(out)/d(out) = 1 出发；单元格的调用求的是 {label} 的梯度（带权重或多个输出），"
        "所以略去了分步：请对单个输出单独求导来查看。",
    },
    "steps.backward": {
        "en": "backward (in the order autograd ran it), starting from {start}:",
        "zh": "反向传播（按 autograd 实际执行的顺序），起点 {start}：",
    },
    "formula.each": {"en": "1 (each element)", "zh": "1（每个元素）"},
    "formula.trace": {"en": "I (1 on the diagonal, 0 elsewhere)", "zh": "I（对角线上为 1，其余为 0）"},
    "formula.mean_dim": {"en": "1/n along dim={dim}", "zh": "沿 dim={dim} 为 1/n"},
    "formula.var": {"en": "2·({a} − mean)/(n − {correction})", "zh": "2·({a} − 均值)/(n − {correction})"},
    "formula.std": {
        "en": "({a} − mean)/((n − {correction})·{o})",
        "zh": "({a} − 均值)/((n − {correction})·{o})",
    },
    "formula.cumsum": {"en": "g summed from the end along dim={dim}", "zh": "沿 dim={dim} 从末尾起累加 g"},
    "formula.relu": {"en": "1 if {a} > 0 else 0", "zh": "{a} > 0 处为 1，其余为 0"},
    "formula.rows": {"en": "g (summed over rows)", "zh": "g（按行求和）"},
    "formula.nll": {
        "en": "−1/n at each row's target class, 0 elsewhere",
        "zh": "每行目标类别处为 −1/n，其余为 0",
    },
    "formula.expand": {"en": "g summed over the copies", "zh": "g 在各个副本上求和"},
    "formula.picked": {"en": "g at the picked entries, 0 elsewhere", "zh": "选中的位置为 g，其余为 0"},
    "formula.transposed": {"en": "g transposed back", "zh": "g 转置回去"},
    "formula.permuted": {"en": "g permuted back", "zh": "g 按原顺序排回去"},
    "formula.passed_on": {"en": "1 (g passed on)", "zh": "1（g 原样传下去）"},
    "formula.prod": {"en": "the product of the other elements", "zh": "其余元素之积"},
    "formula.max": {
        "en": "1 at the largest element (shared among ties), 0 elsewhere",
        "zh": "最大元素处为 1（并列时平分），其余为 0",
    },
    "formula.min": {
        "en": "1 at the smallest element (shared among ties), 0 elsewhere",
        "zh": "最小元素处为 1（并列时平分），其余为 0",
    },
    "formula.max_index": {
        "en": "1 at the index max returned (one of tied elements: the whole g goes there), 0 elsewhere",
        "zh": "max 返回的那个下标处为 1（并列时整个 g 只给这一个），其余为 0",
    },
    "formula.min_index": {
        "en": "1 at the index min returned (one of tied elements: the whole g goes there), 0 elsewhere",
        "zh": "min 返回的那个下标处为 1（并列时整个 g 只给这一个），其余为 0",
    },
    "formula.unsorted": {"en": "g put back where each element came from", "zh": "g 放回每个元素原来的位置"},
    "steps.col.node": {"en": "backward node", "zh": "反向节点"},
    "steps.col.forward": {"en": "undoes", "zh": "对应的前向计算"},
    "steps.col.local": {"en": "local derivative", "zh": "局部导数"},
    "steps.col.grad": {"en": "gradient: arriving · local = sent on", "zh": "梯度：传入 · 局部导数 = 传出"},
    "steps.g": {
        "en": "{g} in a formula: the gradient arriving at that step (the last column's 'arriving').",
        "zh": "公式里的 {g}：传到这一步的梯度（最后一列的“传入”）。",
    },
    "steps.broadcast": {
        "en": "(summed: {name} was broadcast to {count} elements)",
        "zh": "（求和：{name} 被广播到 {count} 个元素）",
    },
    "steps.leaves": {
        "en": "each leaf's grad is the sum of what every path sent it:",
        "zh": "每个叶子的梯度 = 各条路径传给它的梯度之和：",
    },
    "steps.paths": {"en": "({count} paths: steps {steps})", "zh": "（{count} 条路径：步骤 {steps}）"},
    "steps.not_needed": {"en": "not computed (not needed)", "zh": "未计算（不需要）"},
    "steps.routing": {"en": "(routing: no arithmetic)", "zh": "（搬运：不做运算）"},
    "steps.kink": {
        "en": "(at exactly 0 there is a kink: PyTorch uses 0 there)",
        "zh": "（在 0 处是折点、不可导：PyTorch 在那里取 0）",
    },
    "steps.fold_block": {
        "en": "steps {start}–{stop}: [{block}] × {count}",
        "zh": "第 {start}–{stop} 步：[{block}] × {count}",
    },
    "steps.fold": {
        "en": "steps {start}–{stop} ({count} steps, not shown one by one): {kinds}",
        "zh": "第 {start}–{stop} 步（共 {count} 步，未逐一列出）：{kinds}",
    },
    "steps.where_nan": {
        "en": "{names}: nan from torch.where. where sends 0 to the branch it did not take, but that branch "
        "still multiplies the 0 by its local derivative, and 0 · nan = nan (sqrt or log outside their "
        "domain). Make the branch safe first, e.g. torch.sqrt(torch.where(x > 0, x, 1)).",
        "zh": "{names}：nan 来自 torch.where。where 给没有选中的分支传 0，但那个分支仍会把 0 乘上它的局部导数，"
        "而 0 · nan = nan（sqrt、log 在定义域外）。先让分支安全，例如 torch.sqrt(torch.where(x > 0, x, 1))。",
    },
    "steps.not_explained": {"en": "(not explained: {node})", "zh": "（未解释：{node}）"},
    "steps.fold_one": {
        "en": "step {start} (not shown one by one): {kinds}",
        "zh": "第 {start} 步（未逐一列出）：{kinds}",
    },
    "steps.more_lines": {"en": "… {count} more lines", "zh": "…… 另有 {count} 行"},
    "steps.cut": {
        "en": "(the graph has more than {limit} nodes: only the first {limit} were followed)",
        "zh": "（计算图超过 {limit} 个节点：只跟踪了前 {limit} 个）",
    },
    "steps.hooked": {
        "en": "{names}: a hook (register_hook) changed a gradient on its way back: the table shows what "
        "PyTorch stored with it ({grads}), the steps what each node sent; --check shows the derivative "
        "of {out} itself.",
        "zh": "{names}：一个 hook（register_hook）在反向途中改变了梯度：表格里是 PyTorch 带着它存下的值（{grads}），"
        "逐步展开里是每个节点传出的值；--check 会给出 {out} 的导数本身。",
    },
    "steps.none": {
        "en": "--steps: no backward pass of the output was run to show step by step "
        "(the cell's own passes differentiated a gradient, or there was nothing to differentiate)",
        "zh": "--steps：没有可逐步展示的对输出的反向传播（单元格自己的反向传播是在对梯度求导，或没有可求导的内容）",
    },
    # ---- the backward graph --------------------------------------------
    "graph.title": {
        "en": "backward graph: from {out} back to the leaves (the way gradients flow)",
        "zh": "反向计算图：从 {out} 回到叶子张量（梯度流动的方向）",
    },
    "graph.shared": {"en": "(shared, shown above)", "zh": "（共用，见上方）"},
    "graph.more": {"en": "… {count} more nodes", "zh": "…… 另有 {count} 个节点"},
    "graph.freed": {"en": "(freed by backward())", "zh": "（已被 backward() 释放）"},
    "graph.legend": {
        "en": "on the edges: ×local derivative → gradient sent on (the grad above × the local derivative)",
        "zh": "边上的标注：×局部导数 → 传下去的梯度（上方的 grad × 局部导数）",
    },
    # the words of folded boxes (a model's modules; a run of repeated ops)
    "graph.fold.op": {"en": "1 op", "zh": "1 个运算"},
    "graph.fold.ops": {"en": "{count} ops", "zh": "{count} 个运算"},
    "graph.fold.named_ops": {"en": "{ops}: {names}", "zh": "{ops}：{names}"},
    "graph.fold.each": {"en": "each: {text}", "zh": "每个：{text}"},
    "graph.fold.more_params": {"en": "… {count} more parameters", "zh": "…… 另有 {count} 个参数"},
    "graph.fold.repeated": {"en": "the same ops, repeated", "zh": "同样的运算，重复"},
    "graph.fold.each_time": {"en": "each time: {text}", "zh": "每次：{text}"},
    "graph.fold.last": {"en": "last repetition: {text}", "zh": "最后一次重复：{text}"},
    "graph.fold.first": {"en": "first repetition: {text}", "zh": "第一次重复：{text}"},
    "graph.bad": {
        "en": "--graph {value}: use --graph (names, values, grads), --graph full (also what each node saved) "
        "or --graph N (a model's modules unfolded N levels deep, 0 to 20)",
        "zh": "--graph {value}：请用 --graph（名字、数值、梯度）、--graph full（另加每个节点保存的值）"
        "或 --graph N（模型的模块展开 N 层，0 到 20）",
    },
    # ---- plots -----------------------------------------------------------
    "plot.tangent": {
        "en": "tangent at {name} = {point}",
        "zh": "{name} = {point} 处的切线",
    },
    "plot.figure_text": {
        "en": "<figure: {names}; in a terminal, --save FILE writes it>",
        "zh": "<图：{names}；在终端里可用 --save FILE 保存>",
    },
    "plot.slope": {"en": "slope = {slope}", "zh": "斜率 = {slope}"},
    "plot.held": {"en": "{name} held at {value}", "zh": "{name} 固定为 {value}"},
    "plot.no_cjk_font": {
        "en": "no Chinese font is installed, so plot labels are in English (install one, e.g. fonts-noto-cjk "
        "on Debian/Ubuntu, and run the cell again).",
        "zh": "没有安装中文字体，图中文字改用英文（可安装中文字体，例如 Debian/Ubuntu 的 fonts-noto-cjk，然后重新运行单元格）。",
    },
    "plot.complex": {
        "en": "--plot draws real values only; this cell has complex tensors, so there is no plot.",
        "zh": "--plot 只能画实数；本单元格含有复数张量，所以不画图。",
    },
    "plot.empty": {
        "en": "--plot has nothing to draw: the input is empty.",
        "zh": "--plot 没有可画的内容：输入是空的。",
    },
    "plot.shape": {
        "en": "--plot draws one 1-D input, or scalar inputs (one panel each); here: {shapes}. The table is above.",
        "zh": "--plot 只能画一个一维输入，或若干标量输入（每个一幅）；这里是 {shapes}。数值见上表。",
    },
    "plot.no_grad": {
        "en": "{out} does not depend on {name}, so no derivative is drawn.",
        "zh": "{out} 与 {name} 无关，所以不画导数。",
    },
    "plot.not_elementwise": {
        "en": "{out} has shape {shape}, not the shape of {name}, so only the derivative is drawn against {name}.",
        "zh": "{out} 的形状是 {shape}，与 {name} 不同，所以只画导数随 {name} 的变化。",
    },
    "plot.non_finite": {
        "en": "{count} point(s) with nan or inf values are left out of the plot.",
        "zh": "有 {count} 个点的值是 nan 或 inf，没有画出。",
    },
    "plot.no_vmap": {
        "en": "the cell could not be evaluated over a range of {name} ({error}); the plot shows only the point "
        "and its tangent.",
        "zh": "无法在一段 {name} 取值上运行这个单元格（{error}）；图中只画出该点和切线。",
    },
    "plot.bad_range": {
        "en": "--range {value}: write it as low:high with low < high, e.g. --range -2:5",
        "zh": "--range {value}：请写成 下限:上限，且下限小于上限，例如 --range -2:5",
    },
    "plot.bad_save": {
        "en": "--save {path}: the file name must end in .png or .svg",
        "zh": "--save {path}：文件名必须以 .png 或 .svg 结尾",
    },
    "plot.save_failed": {
        "en": "--save {path}: could not write the file: {error}",
        "zh": "--save {path}：无法写入文件：{error}",
    },
    "plot.save_no_folder": {
        "en": "--save {path}: the folder {folder} does not exist; create it or save elsewhere (the cell did not run)",
        "zh": "--save {path}：文件夹 {folder} 不存在；请先创建它或换个位置保存（单元格没有运行）",
    },
    "plot.save_not_writable": {
        "en": "--save {path}: the folder {folder} cannot be written to; save elsewhere (the cell did not run)",
        "zh": "--save {path}：无法写入文件夹 {folder}；请换个位置保存（单元格没有运行）",
    },
    "plot.save_is_folder": {
        "en": "--save {path}: that is a folder; give a file name ending in .png or .svg (the cell did not run)",
        "zh": "--save {path}：这是一个文件夹；请给出以 .png 或 .svg 结尾的文件名（单元格没有运行）",
    },
    "plot.saved": {"en": "figure saved to {path}", "zh": "图已保存到 {path}"},
    # ---- the gradient-flow figure of a model (--plot on a model) ---------------
    "flow.title": {"en": "Gradient flow: |grad| per layer", "zh": "梯度流：每层的 |梯度|"},
    "flow.xlabel": {"en": "layer (forward order)", "zh": "层（前向顺序）"},
    "flow.ylabel": {"en": "|grad| (log scale)", "zh": "|梯度|（对数刻度）"},
    "flow.mean": {"en": "mean |grad|", "zh": "平均 |梯度|"},
    "flow.max": {"en": "max |grad|", "zh": "最大 |梯度|"},
    "flow.zero": {"en": "all zero", "zh": "全为零"},
    "flow.frozen": {"en": "frozen", "zh": "已冻结"},
    "flow.non_finite": {"en": "non-finite", "zh": "含 nan/inf"},
    "flow.count": {"en": "{label} ({count})", "zh": "{label}（{count} 层）"},
    "flow.every": {"en": "{count} layers, 1 in {step} named", "zh": "共 {count} 层，每 {step} 层标一个名字"},
    "flow.prefix": {"en": "names after {prefix}", "zh": "名字省去了 {prefix}"},
    "flow.empty": {"en": "no layers to show", "zh": "没有可显示的层"},
    # --quiz
    "help.quiz": {
        "en": "show the report as questions (grads, is_leaf, grad_fn, what backward() once more gives, "
        "with --steps each step), each answer hidden until revealed; for worksheets",
        "zh": "把报告变成问题（梯度、is_leaf、grad_fn、再调用一次 backward() 会怎样，配合 --steps 还有每一步），"
        "答案先隐藏，点开才显示；适合做练习",
    },
    "quiz.title": {
        "en": "Quiz: predict each answer, then open it to check",
        "zh": "小测验：先预测每个答案，再展开核对",
    },
    "quiz.at": {"en": "at {points}", "zh": "在 {points} 处"},
    "quiz.reveal": {"en": "answer", "zh": "答案"},
    "quiz.answers": {"en": "Answers", "zh": "答案"},
    "quiz.report": {"en": "the whole report", "zh": "完整报告"},
    "quiz.q.leaf": {
        "en": "{name}.is_leaf and {name}.grad_fn = ?",
        "zh": "{name}.is_leaf 和 {name}.grad_fn = ？",
    },
    "quiz.a.leaf": {
        "en": "True, None: {name} was made directly, not computed from other tensors, so no backward node made it",
        "zh": "True，None：{name} 是直接创建的，不是由其他张量算出来的，所以没有反向节点产生它",
    },
    "quiz.a.computed": {
        "en": "False, {fn}: {name} was computed from tensors that require grad; {fn} is the node that carries "
        "the gradient back through its last operation",
        "zh": "False，{fn}：{name} 是由需要梯度的张量算出来的；{fn} 是把梯度沿它最后一步运算传回去的节点",
    },
    "quiz.q.grad": {
        "en": "After the cell's backward(), {name}.grad = ?",
        "zh": "单元格执行 backward() 之后，{name}.grad = ？",
    },
    "quiz.q.grad_calls": {
        "en": "After the cell's {count} backward() calls, {name}.grad = ?",
        "zh": "单元格执行了 {count} 次 backward() 之后，{name}.grad = ？",
    },
    "quiz.q.derivative": {"en": "{d} = ? ({at})", "zh": "{d} = ？（{at}）"},
    "quiz.a.not_stored": {
        "en": "{value} (the cell called no backward(), so {name}.grad itself is still None; {out}.backward() "
        "would put {value} there)",
        "zh": "{value}（单元格没有调用 backward()，所以 {name}.grad 本身仍是 None；调用 {out}.backward() 才会把 {value} 存进去）",
    },
    "quiz.a.stored": {
        "en": "{value} (the cell called no backward(); {name} is the leaf --wrt made, so %%grad stored {value} "
        "in {name}.grad, as {out}.backward() would. Another {out}.backward() adds to it: {again})",
        "zh": "{value}（单元格没有调用 backward()；{name} 是 --wrt 创建的叶子，所以 %%grad 把 {value} 存进了 "
        "{name}.grad，和 {out}.backward() 的效果一样。再调用一次 {out}.backward() 会累加：{again}）",
    },
    "quiz.a.returned": {
        "en": "{value} (returned by torch.autograd.grad(), which does not store it: {name}.grad stays None)",
        "zh": "{value}（由 torch.autograd.grad() 返回，它不写入 .grad：{name}.grad 仍是 None）",
    },
    "quiz.q.nonleaf_grad": {
        "en": "After backward(), what does {name}.grad hold?",
        "zh": "backward() 之后，{name}.grad 里是什么？",
    },
    "quiz.a.nonleaf_grad": {
        "en": "None: {name} is not a leaf (made by {fn}), and backward() fills .grad of leaves only ({leaves}); "
        "reading {name}.grad also prints a warning. {name}.retain_grad() before backward() keeps it.",
        "zh": "None：{name} 不是叶子（由 {fn} 得到），backward() 只填写叶子（{leaves}）的 .grad；"
        "读取 {name}.grad 还会打印一条警告。在 backward() 之前调用 {name}.retain_grad() 可以保留它。",
    },
    "quiz.q.requires_grad": {"en": "{name}.requires_grad = ?", "zh": "{name}.requires_grad = ？"},
    "quiz.a.detach": {
        "en": "False: {name} = {source}.detach() shares its data ({data}) but is cut out of the graph "
        "(is_leaf True, grad_fn None): no gradient flows back through {name}; to autograd it is a constant",
        "zh": "False：{name} = {source}.detach() 与它共用数据（{data}），但被切出了计算图（is_leaf 为 True，"
        "grad_fn 为 None）：梯度不会经过 {name} 传回去；对 autograd 来说它是常量",
    },
    "quiz.a.detach_from": {
        "en": "False: {name} is computed from {source}.detach(), which is cut out of the graph: no gradient flows "
        "back through it, so to autograd {name} is a constant ({data})",
        "zh": "False：{name} 由 {source}.detach() 算出，而它已被切出计算图：梯度不会经过它传回去，所以对 autograd 来说 "
        "{name} 是常量（{data}）",
    },
    "quiz.a.no_grad": {
        "en": "False: {name} was computed inside torch.no_grad(), where PyTorch records no operation: "
        "{name} = {data} has no grad_fn, and to autograd it is a constant (no gradient flows through it)",
        "zh": "False：{name} 是在 torch.no_grad() 里算出来的，那里 PyTorch 不记录任何运算：{name} = {data} "
        "没有 grad_fn，对 autograd 来说是常量（梯度不经过它）",
    },
    "quiz.a.integer": {
        "en": "False: {name} is {dtype}, and only floating-point and complex tensors can require grad; "
        "{name} = {data} is a constant to autograd",
        "zh": "False：{name} 是 {dtype}，只有浮点和复数张量才能 requires_grad；{name} = {data} 对 autograd 来说是常量",
    },
    "quiz.a.constant": {
        "en": "False (grad_fn None): no gradient flows into {name}, and {name}.grad stays None",
        "zh": "False（grad_fn 为 None）：没有梯度流向 {name}，{name}.grad 一直是 None",
    },
    "quiz.q.inplace": {
        "en": "{name} was changed in place ({call}): {name}.grad_fn = ?",
        "zh": "{name} 被原地修改了（{call}）：{name}.grad_fn = ？",
    },
    "quiz.a.inplace": {
        "en": "{fn}: the in-place operation recorded itself as {name}'s last operation ({name} = {data} now); "
        "backward() goes back through it like through any other node",
        "zh": "{fn}：原地运算把自己记成了 {name} 的最后一步运算（{name} 现在是 {data}）；"
        "backward() 会像经过其他节点一样经过它",
    },
    "quiz.q.local": {
        "en": "step {index} ({node}, undoes {forward}): {local} = ?",
        "zh": "第 {index} 步（{node}，对应 {forward}）：{local} = ？",
    },
    "quiz.q.sent": {
        "en": "step {index} sends on {sent} arriving · local = ?",
        "zh": "第 {index} 步传下去的 {sent} 传来的梯度 · 局部导数 = ？",
    },
    "quiz.q.paths": {
        "en": "{d}: what does each of its {count} paths send, and what is the sum?",
        "zh": "{d}：它的 {count} 条路径各传来多少，总和是多少？",
    },
    "quiz.q.once_more": {
        "en": "If the forward pass and {call} ran once more on this same {name}, without zeroing "
        "{name}.grad, {name}.grad = ?",
        "zh": "如果在同一个 {name} 上把前向计算和 {call} 再运行一次，且不清零 {name}.grad，{name}.grad = ？",
    },
    "quiz.a.once_more": {
        "en": "{total} = {now} (in {name}.grad now) + {added} (what one more call adds): PyTorch adds grads up. "
        "Zero it first ({name}.grad = None, or optimizer.zero_grad()) to get {added} alone.",
        "zh": "{total} = {now}（{name}.grad 现有的）+ {added}（再调用一次加上的）：PyTorch 会累加梯度。"
        "先清零（{name}.grad = None 或 optimizer.zero_grad()）才会只得到 {added}。",
    },
    # --explore
    "help.explore": {
        "en": "add an explorer: a slider per scalar input (range: the value ± max(2, |value|), or "
        "--explore x=-2:2) that moves the point, its tangent and the numbers, computed once from the "
        "record of the one run; with a 1-D input the slider moves along its points",
        "zh": "加一个探索器：每个标量输入一个滑块（范围：该值 ± max(2, |值|)，或 --explore x=-2:2），"
        "移动滑块时点、切线和数值随之变化，都由唯一一次运行的记录预先算好；一维输入时滑块沿它的各点移动",
    },
    "explore.bad_range": {
        "en": "--explore {value}: expected NAME=A:B (or A:B) with A < B, e.g. --explore x=-2:2",
        "zh": "--explore {value}：应为 NAME=A:B（或 A:B），且 A < B，例如 --explore x=-2:2",
    },
    "explore.unknown": {
        "en": "--explore {name}=…: {name} is not an input here (inputs: {names})",
        "zh": "--explore {name}=…：{name} 不是这里的输入（输入有：{names}）",
    },
    "explore.no_record": {
        "en": "--explore evaluates the computation recorded during the run, and the record of {out} cannot "
        "be used here, so there is no explorer (the report above is the run's own).",
        "zh": "--explore 需要计算运行时记录下的计算过程，而 {out} 的记录在这里无法使用，"
        "所以没有探索器（上面的报告来自这次运行本身）。",
    },
    "explore.escapes": {
        "en": "values left the computation as Python values ({calls}), so away from this point the cell may "
        "compute something else: there is no explorer, only the report at this point.",
        "zh": "有值以 Python 值的形式离开了计算（{calls}），离开这个点后单元格可能算出别的东西："
        "所以没有探索器，只有这个点的报告。",
    },
    "explore.random": {
        "en": "the cell draws random numbers, so its function changes from run to run: there is no explorer, "
        "only the report of this run.",
        "zh": "单元格用到了随机数，每次运行函数都不同：所以没有探索器，只有这次运行的报告。",
    },
    "explore.complex": {
        "en": "--explore draws real values only; this cell has complex tensors, so there is no explorer.",
        "zh": "--explore 只画实数；这个单元格有复数张量，所以没有探索器。",
    },
    "explore.shape": {
        "en": "--explore moves one or two scalar inputs, or the points of one 1-D input; here the inputs are "
        "{shapes}, so there is no explorer.",
        "zh": "--explore 可以移动一到两个标量输入，或一个一维输入的各点；这里的输入是 {shapes}，所以没有探索器。",
    },
    "explore.not_elementwise": {
        "en": "{out} is not computed element by element from {name} (each {out}[i] from {name}[i] alone), so "
        "there is no tangent to move along it: no explorer.",
        "zh": "{out} 不是由 {name} 逐元素算出的（每个 {out}[i] 只由 {name}[i] 决定），"
        "所以没有可以沿它移动的切线：没有探索器。",
    },
    "explore.hint": {
        "en": "move the slider: the point, its tangent and the numbers follow",
        "zh": "拖动滑块：点、切线和数值随之变化",
    },
    "explore.description": {
        "en": "{out}, its derivative and the tangent at the slider's point",
        "zh": "{out}、它的导数和滑块所在点的切线",
    },
    "explore.col_name": {"en": "tensor", "zh": "张量"},
    "explore.over": {"en": "{name} from {low} to {high}", "zh": "{name} 从 {low} 到 {high}"},
    "explore.over_vector": {"en": "{count} points of {name}", "zh": "{name} 的 {count} 个点"},
    "explore.text": {
        "en": "explorer of {out}: {where} ({points} values, computed once from the record of the run); "
        "its sliders move in JupyterLab, VS Code and Colab, the picture shows the run's own point",
        "zh": "{out} 的探索器：{where}（{points} 个值，由这次运行的记录一次算好）；"
        "滑块在 JupyterLab、VS Code 和 Colab 中可以拖动，图片显示的是这次运行的点",
    },
}

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "torchgrad_magic_language", default=None
)


def locale_language() -> str:
    """``zh`` when the locale is Chinese (``zh_CN.UTF-8``, ``zh_TW`` ...), else ``en``."""
    for var in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = os.environ.get(var)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    try:
        code = locale.getlocale()[0] or ""
    except ValueError:
        code = ""
    return "zh" if code.lower().startswith("zh") else "en"


def resolve(language: str | None) -> str:
    """``en``/``zh`` as given; ``auto``/``None``: the language in use, else the locale's."""
    if language in LANGUAGES:
        return language
    if language in (None, "auto"):
        return _current.get() or locale_language()
    raise ValueError(f"language must be one of auto, {', '.join(LANGUAGES)}; got {language!r}")


@contextlib.contextmanager
def using(language: str | None) -> Iterator[str]:
    """Make every ``t()`` inside use *language* (``None``/``auto``: keep/derive it)."""
    resolved = resolve(language)
    token = _current.set(resolved)
    try:
        yield resolved
    finally:
        _current.reset(token)


def template(message_id: str) -> str:
    """The message *message_id* in the current language, its ``{fields}`` left to fill."""
    return MESSAGES[message_id][resolve(None)]


def t(message_id: str, **fields: object) -> str:
    """The message *message_id* in the current language, with *fields* filled in."""
    return MESSAGES[message_id][resolve(None)].format(**fields)


@dataclass(frozen=True)
class Note:
    """A note for the report: a message id and its fields, put into words (in the
    language in use) only when the report is shown."""

    id: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return t(self.id, **self.fields)


def note(message_id: str, **fields: Any) -> Note:
    if message_id not in MESSAGES:
        raise KeyError(message_id)
    return Note(message_id, fields)
