"""`python -m api.cli …` is `liteshift …` (how `liteshift serve` starts its children)."""

import sys

from api.cli import main

sys.exit(main())
