"""Models with their map functions and weight loading: RCGrad and the FlowGrad family, LVS, Hear The Flow, Oya et al., baselines, the perfect listeners."""
from vssl_core._lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
