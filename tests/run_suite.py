"""The whole test suite as `make test` and CI run it: two pytest processes at the same time, one for
the GUI tests (marker `gui`) and one for everything else.

The GUI tests spend most of their time waiting for a viewer window to draw, and they run one
after another, so one viewer at a time competes for the cores. The other tests use the cores
meanwhile. On our 2-core machines the suite takes about 15 minutes this way against about 21 in one
process (the figures are in docs/development.md). The rest's output streams live; the GUI tests'
output is kept in a file and printed whole when both are done, so the two never interleave.

    python tests/run_suite.py                  the whole suite
    python tests/run_suite.py -x --durations=20    arguments go to both pytest processes

For one file, one marker or one test, call pytest itself (`python -m pytest -m "not gui"`).
The exit status is 0 when both passed (a process that found no test to run counts as passed, as
long as the other ran some), else the first failure's pytest status.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NO_TESTS_COLLECTED = 5             # pytest's exit status when the selection is empty


def combined_status(rest: int, gui: int) -> int:
    """One exit status for the two runs: 0 when both passed, or when one passed and the other had
    nothing to run; otherwise the first run's failure (the rest's), then the GUI run's."""
    ok = {0, NO_TESTS_COLLECTED}
    if rest in ok and gui in ok:
        return NO_TESTS_COLLECTED if rest == gui == NO_TESTS_COLLECTED else 0
    return rest if rest not in ok else gui


def main(argv) -> int:
    pytest = [sys.executable, "-m", "pytest", *argv]
    # Each run gets a temporary folder of its own, so neither cleans up what the other still uses.
    base = Path(tempfile.mkdtemp(prefix="trigan-tests-"))
    log_path = base / "gui.log"
    with open(log_path, "w+") as log:
        gui = subprocess.Popen([*pytest, "-m", "gui", f"--basetemp={base / 'gui'}"], cwd=REPO,
                               stdout=log, stderr=subprocess.STDOUT)
        try:
            print("the GUI tests run beside these; their report follows this one", flush=True)
            rest = subprocess.run([*pytest, "-m", "not gui", f"--basetemp={base / 'rest'}"], cwd=REPO,
                                  check=False).returncode
            gui_status = gui.wait()
        except KeyboardInterrupt:
            gui.terminate()
            gui.wait()
            raise
        finally:
            if gui.poll() is None:
                gui.kill()
                gui.wait()
        log.seek(0)
        print("\n" + "=" * 30 + " the GUI tests (marker gui) " + "=" * 30, flush=True)
        shutil.copyfileobj(log, sys.stdout)
        sys.stdout.flush()
    status = combined_status(rest, gui_status)
    if status == 0:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"the tests' files are kept in {base}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
