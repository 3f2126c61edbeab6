"""``python -m fastgex`` runs the command line."""

import sys

from fastgex.cli import main

sys.exit(main())
