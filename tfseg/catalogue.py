"""Zoo names for the packages below the zoo: the catalogue ``tfseg.zoo`` registers when it is imported.

``tfseg.inference``, ``tfseg.export`` and ``tfseg.training`` take a zoo name (``camvid_unet``) wherever
they take a model, yet the zoo is built on them. So they never import it: they ask ``catalogue()``,
and ``tfseg.zoo`` (imported by ``import tfseg``) hands itself down with ``register``. The catalogue
answers ``list()``, ``card(name)`` (a ``ModelCard``) and ``load(name, weights=..., num_classes=...)``.
"""

from __future__ import annotations

_registered = None


def register(catalogue):
    """Make ``catalogue`` (an object with ``list``, ``card`` and ``load``) the one the lower packages consult."""
    global _registered
    missing = [name for name in ("list", "card", "load") if not callable(getattr(catalogue, name, None))]
    if missing:
        raise TypeError(f"a model catalogue needs {missing}; got {catalogue!r}")
    _registered = catalogue


def catalogue():
    """The registered catalogue (``tfseg.zoo`` once ``import tfseg`` has run)."""
    if _registered is None:
        raise RuntimeError("no model catalogue registered: `import tfseg` registers the zoo (tfseg.zoo)")
    return _registered
