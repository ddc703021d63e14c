"""``python -m vlmstudy`` runs the ``vlmstudy`` command."""

import sys

from .cli import main

sys.exit(main())
