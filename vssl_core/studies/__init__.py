"""One module per paper, all the same shape: a Setup, data, models, maps, tables, the paper's numbers."""
from vssl_core._lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
