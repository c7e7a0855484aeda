"""tinct: automatic image colorization with weights inside the package.

    >>> import tinct
    >>> tinct.colorize("old_photo.jpg").save("colorized.png")
    >>> colorizer = tinct.Colorizer("default", device="cpu")
    >>> colorizer.colorize(pil_image)
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["colorize", "colorize_all", "Colorizer", "ImageReadError", "__version__"]


def __getattr__(name: str):
    # lazy: `import tinct` stays cheap for the CLI's --help
    if name in ("colorize", "colorize_all", "Colorizer"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "ImageReadError":
        from .io import ImageReadError

        return ImageReadError
    raise AttributeError(f"module 'tinct' has no attribute {name!r}")
