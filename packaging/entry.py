"""The single-file binary's entry point: `eraftd` exactly as the console script runs it."""
import sys

from eraftd.cli import main

if __name__ == "__main__":
    sys.exit(main())
