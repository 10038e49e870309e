"""The version of edgeldm, in a module of its own: stamped into manifests and plans by modules that must not
import the package's facade (``edgeldm/__init__.py`` re-exports the library API)."""

__version__ = "0.1.0"
