"""b4t.adversarial: FGM, PGD, VAT, gradient penalty, R-Drop and special losses for b4t-trainer."""

from b4t.adversarial._version import __version__

__all__ = ["__version__"]
