"""`python -m eraftd` == the `eraftd` console script."""
import sys

from eraftd.cli import main

sys.exit(main())
