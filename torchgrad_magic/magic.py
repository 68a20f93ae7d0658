"""The ``%%grad`` cell magic: declared arguments, then one call into the engine.

This module must stay light: loading the extension imports neither torch nor
matplotlib. The engine (and torch) is imported the first time a cell runs.
"""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .spec import GradError, check_name, split_line


@magics_class
class GradMagic(Magics):
    """Show PyTorch autograd at work: ``%%grad --wrt x=3``."""

    @magic_arguments("%grad")  # shown as %%grad in the help
    @argument(
        "--wrt",
        nargs="+",
        action="extend",
        metavar="SPEC",
        help="variables to differentiate with respect to: name=value makes a fresh leaf tensor "
        "(value is any Python expression, spaces allowed: x=torch.linspace(-20, 20, 20)); a bare "
        "name starts from a copy of the existing variable. Without --wrt, the cell's own "
        "leaf tensors (requires_grad=True) are used.",
    )
    @argument("--of", metavar="NAME", help="the output to differentiate (default: see above)")
    @argument(
        "--retain-grad",
        action="store_true",
        help="keep and show the grads of the cell's named intermediate tensors",
    )
    @argument(
        "--dtype",
        choices=["float16", "bfloat16", "float32", "float64"],
        help="dtype of the --wrt leaves and the default dtype inside the cell (default: float32)",
    )
    @argument("--device", metavar="DEV", help="device of the --wrt leaves, e.g. cpu or cuda")
    @argument("--out", metavar="NAME", help="store the result object (.grads, .output, ...) in NAME")
    @argument("-q", "--quiet", action="store_true", help="show nothing (use with --out)")
    @cell_magic
    def grad(self, line: str, cell: str) -> None:
        """Run the cell, differentiate its output, and show every tensor's
        data, grad, grad_fn, is_leaf and requires_grad in one table.

        Example::

            %%grad --wrt x=3
            y = 3 * x ** 2

        shows x = 3 with grad 18 and y = 27 (grad_fn MulBackward0, not a leaf).

        The output is the tensor named by --of; else the one the cell called
        backward() on (then %%grad does not call it again); else the cell's
        last expression; else the last assigned tensor that depends on the
        leaves. A non-scalar output is summed before backward. Grads never
        carry over between runs: --wrt leaves are new every time. A bare
        --wrt NAME leaves your own NAME untouched. A trailing ';' on the
        magic line works like -q. Torch's grad mode, anomaly mode and default
        dtype, and the warning filters, are restored after the cell.
        """
        from .engine import grad

        line, silenced = _strip_semicolon(line)
        try:
            args = self.grad.parser.parse_args(split_line(line))
            if args.out is not None:
                check_name(args.out, f"--out {args.out}")
            result = grad(
                cell, args.wrt, of=args.of, retain_grad=args.retain_grad,
                dtype=args.dtype, device=args.device, shell=self.shell,
            )  # fmt: skip
        except GradError as e:
            raise UsageError(f"%%grad: {e}") from None
        if args.out is not None:
            self.shell.user_ns[args.out] = result
        if not (args.quiet or silenced):
            from IPython.display import display

            display(result)


def _strip_semicolon(line: str) -> tuple[str, bool]:
    stripped = line.rstrip()
    if stripped.endswith(";"):
        return stripped[:-1], True
    return line, False
