"""A layer whose library is missing says which extra installs it, at import, by name."""

from __future__ import annotations

import subprocess
import sys


def test_schedules_without_celery_say_which_extra() -> None:
    # A fresh interpreter where celery cannot be imported (as in an install without the extra).
    code = (
        "import sys; sys.modules['celery'] = None\n"
        "try:\n"
        "    import trademl.monitoring.schedule\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("MissingExtraError retraining schedules"), done.stdout
    assert "pip install 'trademl[celery]'" in done.stdout
