"""The ``%%grad`` cell magic: declared arguments, then one call into the engine.

This module must stay light: loading the extension imports neither torch nor
matplotlib. The engine (and torch) is imported the first time a cell runs.

Defaults are traitlets on :class:`GradMagic`, so ``%config GradMagic`` lists
them, ``%config GradMagic.language = 'zh'`` sets one, and ``ipython_config.py``
can set them with ``c.GradMagic.digits = 6``.
"""

from __future__ import annotations

import argparse
import re

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, CaselessStrEnum, Enum, Int

from .messages import t, using
from .spec import GradError, check_name, split_line

DTYPES = ["float16", "bfloat16", "float32", "float64"]


@magics_class
class GradMagic(Magics):
    """Show PyTorch autograd at work: ``%%grad --wrt x=3``."""

    language = CaselessStrEnum(
        ["auto", "en", "zh"],
        default_value="auto",
        help="Language of the report, notes and errors: 'en', 'zh', or 'auto' (from the locale: zh* gives "
        "Chinese). A cell's --lang wins.",
    ).tag(config=True)
    dtype = Enum(
        DTYPES,
        default_value=None,
        allow_none=True,
        help="dtype of --wrt leaves when a cell gives no --dtype (None: PyTorch's default dtype).",
    ).tag(config=True)
    digits = Int(4, min=1, max=17, help="Significant digits of the numbers in the report.").tag(config=True)
    max_items = Int(
        6, min=2, help="How many values of a long tensor the report shows (first and last ones)."
    ).tag(config=True)
    plot = Bool(
        False, help="Draw the function and its derivative under every cell (a cell's --no-plot wins)."
    ).tag(config=True)

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
        choices=DTYPES,
        help="dtype of the --wrt leaves and the default dtype inside the cell "
        "(default: GradMagic.dtype, else PyTorch's default, float32)",
    )
    @argument("--device", metavar="DEV", help="device of the --wrt leaves, e.g. cpu or cuda")
    @argument(
        "--plot",
        action=argparse.BooleanOptionalAction,
        help="draw the output and its derivative: against a 1-D input, or around scalar points with "
        "the tangent (default: GradMagic.plot)",
    )
    @argument(
        "--range",
        metavar="A:B",
        help="the window of --plot around scalar points, e.g. --range -2:5; implies --plot",
    )
    @argument("--save", metavar="FILE", help="write the figure to FILE (.png or .svg); implies --plot")
    @argument(
        "--order", type=int, default=1, metavar="N", help="also show derivatives up to order N (d²y/dx² ...)"
    )
    @argument("--hessian", action="store_true", help="the matrix of second partials (scalar --wrt inputs)")
    @argument(
        "--jacobian", action="store_true", help="every d out[i]/d in[j] of a vector output, not just the sum"
    )
    @argument("--check", action="store_true", help="compare with central differences in float64: pass/fail")
    @argument("--symbolic", action="store_true", help="SymPy's derivative beside autograd's number")
    @argument(
        "--expect",
        nargs="+",
        metavar="VALUE",
        help="the grads you expect: --expect 38, or --expect u=43 v=20; a mismatch is an error "
        "(so a notebook run in CI fails), a match prints one line instead of the report",
    )
    @argument(
        "--graph",
        nargs="?",
        const="simple",
        choices=["simple", "full"],
        help="the backward graph from the output to the leaves with names, values and grads "
        "(--graph full: also what each node saved)",
    )
    @argument(
        "--times-input", action="store_true", help="add a grad×input column (an input-sensitivity score)"
    )
    @argument(
        "--lang", choices=["en", "zh"], help="language of this cell's report (default: GradMagic.language)"
    )
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
        --plot draws the output and its derivative (a 1-D input, or f and
        f' around scalar points with the tangent); in a terminal use --save.
        --order/--hessian/--jacobian go beyond the first derivative, --check
        compares with finite differences, --symbolic with SymPy, --expect
        turns the grads into a test, --graph draws the backward graph.
        Defaults: %config GradMagic (language, dtype, digits, max_items, plot).
        """
        from .engine import grad

        line, silenced = _strip_semicolon(line)
        with using(self.language):
            try:
                args = _parse(self.grad.parser, line)
                result = grad(cell, shell=self.shell, **self._options(args))
            except GradError as e:
                raise UsageError(t("err.prefix", message=e)) from None
        if args.out is not None:
            self.shell.user_ns[args.out] = result
        if not (args.quiet or silenced):
            _show(result)

    def _options(self, args: argparse.Namespace) -> dict:
        """The engine's keyword arguments: the cell's flags over the configured defaults."""
        if args.out is not None:
            check_name(args.out, f"--out {args.out}")
        return dict(
            wrt=args.wrt, of=args.of, retain_grad=args.retain_grad, dtype=args.dtype or self.dtype,
            device=args.device, digits=self.digits, max_items=self.max_items, lang=args.lang or self.language,
            plot=self.plot if args.plot is None else args.plot, plot_range=args.range, save=args.save,
            order=args.order, hessian=args.hessian, jacobian=args.jacobian, check=args.check,
            symbolic=args.symbolic, expect=args.expect, times_input=args.times_input, graph=args.graph,
        )  # fmt: skip


def _show(result) -> None:
    """The report (or, with --expect, its one line), then the figure as one image/png."""
    from IPython.display import display

    if result.expect_line is not None:
        print(result.expect_line)
        return
    display(result)
    if result.figure is not None:
        display(result.figure_bundle(), raw=True)


def _strip_semicolon(line: str) -> tuple[str, bool]:
    stripped = line.rstrip()
    if stripped.endswith(";"):
        return stripped[:-1], True
    return line, False


_ARGPARSE = [
    (re.compile(r"unrecognized arguments: (?P<args>.*)"), "err.unrecognized"),
    (re.compile(r"argument (?P<flag>\S+): invalid choice: (?P<value>\S+) \(choose from (?P<choices>.*)\)"), "err.invalid_choice"),
    (re.compile(r"argument (?P<flag>\S+): expected (?:at least )?one argument"), "err.expected_value"),
    (re.compile(r"argument (?P<flag>\S+): invalid (?P<kind>\w+) value: (?P<value>.*)"), "err.invalid_value"),
]  # fmt: skip


_LANG_FLAG = re.compile(r"--lang(?:\s+|=)(en|zh)\b")


def _parse(parser, line: str):
    """Parse the magic line; errors come in the user's language (a --lang on
    the same line counts even when the rest of the line cannot be parsed)."""
    flag = _LANG_FLAG.search(line)
    with using(flag.group(1) if flag else None):
        try:
            tokens = split_line(line)
            for i, token in enumerate(tokens[:-1]):  # --range -2:5: a value that starts with '-'
                if token == "--range":
                    tokens[i : i + 2] = [f"--range={tokens[i + 1]}"]
                    break
            return parser.parse_args(tokens)
        except UsageError as e:
            for pattern, message_id in _ARGPARSE:
                match = pattern.search(str(e))
                if match:
                    raise GradError(t(message_id, **match.groupdict())) from None
            raise
