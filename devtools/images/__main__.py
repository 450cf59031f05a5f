"""``python -m devtools.images [NAMES...]``: build the real node's images (cached)."""

import sys

from .build import main

sys.exit(main())
