"""matplotlib for the bench scripts, without making it a dependency of the project.

When the environment lacks it, pip installs it once into a scratch directory under the
temporary directory (pyproject and the venv are left alone) and it is imported from there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile


def import_pyplot():
    """matplotlib.pyplot with the Agg backend; raises when it can be neither imported nor installed."""
    try:
        import matplotlib
    except ImportError:
        target = os.path.join(tempfile.gettempdir(), "svcnet-bench-matplotlib")
        if not os.path.isdir(os.path.join(target, "matplotlib")):
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", target,
                            "matplotlib"], check=True, capture_output=True, timeout=300)
        sys.path.insert(0, target)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
