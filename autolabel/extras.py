"""Optional dependencies, imported where a feature needs them.

Fitting needs none of them. open3d (the ``synth`` extra, ``pip install 'autolabel[synth]'``)
ray-casts for scene synthesis and shape-prior building and reads ``.pcd`` and ``.ply`` clouds.
"""

from __future__ import annotations

from types import ModuleType

INSTALL_SYNTH = "pip install 'autolabel[synth]'"


class MissingExtra(ImportError):
    """An optional dependency that a feature needs cannot be imported; the message (one line)
    names the feature and how to install the dependency."""


def require_open3d(feature: str) -> ModuleType:
    """The ``open3d`` module, or :class:`MissingExtra` naming ``feature`` when it is not there
    (not installed, or its shared libraries are missing).

    >>> require_open3d("ray casting").__name__
    'open3d'
    """
    try:
        import open3d
    except (ImportError, OSError) as error:
        raise MissingExtra(f"{feature} needs open3d, which cannot be imported ({error}); "
                           f"install it with {INSTALL_SYNTH}") from error
    return open3d
