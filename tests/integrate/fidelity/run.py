"""``python run.py MODE OUT [CONFIG] [--streams]``: run the fidelity worker in one process and write what the
caller saw and what really ran to OUT (JSON). MODE: plain | patch | three_lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    config = sys.argv[3] if len(sys.argv) > 3 and not sys.argv[3].startswith("--") else None
    streams = "--streams" in sys.argv
    if mode == "patch":
        import infra

        infra.patch(config)
    elif mode == "three_lines":
        from infra.enrichment_helpers import enable_caching_for_worker

        cached_classes = enable_caching_for_worker(config)
        assert "FidelityWorker" in cached_classes
    elif mode != "plain":
        raise SystemExit(f"unknown mode {mode}")

    def make(**settings: object) -> object:
        from fidelity_worker import FidelityWorker  # imported inside a function, as the public worker does

        return FidelityWorker(**settings)  # type: ignore[arg-type]

    from drive import drive
    from fidelity_worker import COMPUTED

    outputs = drive(make, streams=streams)
    out.write_text(json.dumps({"outputs": outputs, "computed": COMPUTED}))


if __name__ == "__main__":
    main()
