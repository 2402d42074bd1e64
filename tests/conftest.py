"""Shared test configuration. Fixtures that start servers live next to the tests using them
(tests/integration/conftest.py, tests/e2e/conftest.py)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "src") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "src"))
