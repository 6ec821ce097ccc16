"""The voice turn with perf-infra, for code that can't change its imports: ``patch()`` caches the methods
listed under ``wrap`` in perf_config on the classes themselves, then the unchanged pipeline runs.

    PERF_CONFIG=examples/perf_config.json python -m examples.voice_turn_patched < utterances.txt
"""

from __future__ import annotations

import sys

from infra.integrate import patch

handle = patch()  # before the pipeline runs; handle.undo() puts the classes back

from examples.voice.turn import main  # noqa: E402 - imported after patch() on purpose (either order works)

if __name__ == "__main__":
    sys.exit(main())
