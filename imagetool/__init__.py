"""pyimg, the image tool. Its submodules load through runtime's finder
(see runtime/__init__.py): pyimg is a fresh interpreter on every call too."""
from runtime import install_finder

install_finder(__name__, __path__[0])
