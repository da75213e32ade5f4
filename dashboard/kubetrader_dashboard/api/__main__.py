"""`python -m kubetrader_dashboard.api [--host H] [--port P]`: serve the API with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from kubetrader_dashboard.api.main import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kubetrader_dashboard.api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
