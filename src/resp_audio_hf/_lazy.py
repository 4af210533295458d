"""Lazy re-exports for the subpackages whose modules need optional extras (``data``, ``benchmark``)."""

from collections.abc import Callable
from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """
    A module-level ``__getattr__`` for ``package`` that imports ``exports[name]`` (a module path relative to
    ``package``) only when ``name`` is first looked up, so importing the package itself never pulls in ``datasets``,
    ``pandas`` or ``scikit-learn``. Use as ``__getattr__ = lazy_exports(__name__, _EXPORTS)``.
    """

    def __getattr__(name: str):
        if name in exports:
            return getattr(import_module(exports[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
