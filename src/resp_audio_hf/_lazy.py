"""Lazy re-exports for the subpackages whose modules need optional extras (`data`, `benchmark`)."""

from collections.abc import Callable, Mapping
from importlib import import_module


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[list[str], Callable[[str], object]]:
    """
    `__all__` and a module-level `__getattr__` for `package`, which re-exports the names `exports[module]` of
    each `module` (a path relative to `package`) and imports the module only when one of its names is first looked
    up, so importing the package itself never pulls in `datasets`, `pandas` or `scikit-learn`. Use as
    `__all__, __getattr__ = lazy_exports(__name__, {".tasks": ("load_task", ...), ...})`.
    """
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name in module_of:
            return getattr(import_module(module_of[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return list(module_of), __getattr__
