"""Datasets: Urbansas (real and synthetic, one loader), VGG-SS and Flickr-SoundNet annotations, flow, evaluation sets."""
from vssl_core._lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
