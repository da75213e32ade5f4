"""`python -m kubetrader_operator`: run the operator with the settings from the environment."""

from __future__ import annotations

from kubetrader_operator.settings import get_settings


def kopf_args() -> list[str]:
    """Arguments for `kopf run`: our module, no peering, the liveness endpoint, the namespaces."""
    settings = get_settings()
    args = ["run", "-m", "kubetrader_operator.main", "--standalone", "--liveness", settings.liveness_endpoint]
    if settings.namespaces:
        for namespace in settings.namespaces:
            args += ["--namespace", namespace]
    else:
        args.append("--all-namespaces")
    return args


def main() -> None:
    from kopf.cli import main as kopf_main

    kopf_main(args=kopf_args())


if __name__ == "__main__":
    main()
