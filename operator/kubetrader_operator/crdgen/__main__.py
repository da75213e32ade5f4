"""`python -m kubetrader_operator.crdgen DIR`: (re)write the CRD files from the spec models."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from kubetrader_operator.crdgen import KINDS, crd_filename, render_crd

log = logging.getLogger("kubetrader_operator.crdgen")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        log.error("usage: python -m kubetrader_operator.crdgen OUTPUT_DIR")
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        path = out / crd_filename(kind)
        path.write_text(render_crd(kind))
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv[1:]))
