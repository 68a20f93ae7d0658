"""torchgrad_magic: see PyTorch autograd at work in IPython and Jupyter.

    %load_ext torchgrad_magic

    %%grad --wrt x=3
    y = 3 * x ** 2

The same engine works without IPython::

    from torchgrad_magic import grad
    result = grad("y = 3 * x ** 2", wrt="x=3")
    result.grads["x"]  # tensor(18.)

Importing this package is cheap: torch is imported when the first cell runs.
"""

from __future__ import annotations

import warnings
from typing import Any

__version__ = "0.1.0"
__all__ = [
    "GradError",
    "GradOptions",
    "GradResult",
    "grad",
    "load_ipython_extension",
    "unload_ipython_extension",
]

_LAZY = {
    "grad": "engine",
    "GradResult": "render.result",
    "GradError": "capture.spec",
    "GradOptions": "options",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext torchgrad_magic``: register the ``%%grad`` cell magic."""
    from .magic import GradMagic

    magics = _with_valid_config(GradMagic, ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)


def _with_valid_config(kind: Any, ipython: Any) -> Any:
    """The magics, made with the shell's config; a value ``%config`` refused (it keeps it in the
    config all the same: ``GradMagic.language = 'fr'``) is dropped with a warning instead of
    failing the load, and with it every later ``%reload_ext``. (An unload put the value in use
    back first: :func:`unload_ipython_extension`.)"""
    from traitlets import TraitError

    try:
        return kind(ipython)
    except TraitError as error:
        section = ipython.config.get(kind.__name__)
        for name in _refused(kind, section):
            warnings.warn(
                f"%config {kind.__name__}.{name} = {section[name]!r} ignored: {error}", stacklevel=2
            )
            del section[name]
        return kind(ipython)


def _refused(kind: Any, section: Any) -> list[str]:
    """The names of *kind*'s traits whose value in the config *section* they refuse."""
    from traitlets import TraitError

    names = [name for name in list(section or ()) if name in kind.class_trait_names()]
    refused = []
    for name in names:
        try:
            kind.class_traits()[name].validate(None, section[name])
        except TraitError:
            refused.append(name)
    return refused


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext torchgrad_magic``: remove ``%%grad`` again."""
    manager = ipython.magics_manager
    manager.magics["cell"].pop("grad", None)
    instance = manager.registry.pop("GradMagic", None)
    section = ipython.config.get("GradMagic")
    if instance is not None and section:  # a refused %config value: the one in use is the one kept
        for name in _refused(type(instance), section):
            section[name] = getattr(instance, name)
    if instance in ipython.configurables:
        ipython.configurables.remove(instance)
