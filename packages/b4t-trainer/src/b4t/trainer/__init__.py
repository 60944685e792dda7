"""b4t.trainer.

a keras-like compile/fit trainer with callbacks, resume and torch.distributed support.
"""

from b4t.trainer._version import __version__
from b4t.trainer.callback import HOOK_NAMES, Callback

__all__ = ["HOOK_NAMES", "Callback", "__version__"]
