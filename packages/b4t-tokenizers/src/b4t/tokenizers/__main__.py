"""``python -m b4t.tokenizers``: see ``b4t.tokenizers._cli``."""

import sys

from b4t.tokenizers._cli import main

sys.exit(main())
