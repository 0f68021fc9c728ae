"""``python -m bog.ctl``: the same entry point as the installed ``bogctl``."""

import sys

from bog.ctl.cli import main

sys.exit(main())
