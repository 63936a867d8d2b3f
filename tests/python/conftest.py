"""Shared pytest setup: makes `import kerasbackup` find inst/python."""

import os
import sys

INST_PYTHON = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "inst", "python")
)
if INST_PYTHON not in sys.path:
    sys.path.insert(0, INST_PYTHON)
