"""The service objects one API process holds, built from its settings.

Built once per app (`create_app(settings)`), so tests run apps side by side on their
own stores, and nothing reads the environment after start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetrader import defaults
from kubetrader_dashboard.auth.authenticator import Authenticator
from kubetrader_dashboard.auth.ratelimit import RateLimiter
from kubetrader_dashboard.services.cluster import ClusterService
from kubetrader_dashboard.services.live import LiveService
from kubetrader_dashboard.services.logs import LogService
from kubetrader_dashboard.services.mlflow import MlflowService
from kubetrader_dashboard.services.queue import QueueService
from kubetrader_dashboard.services.results import ResultStore
from kubetrader_dashboard.services.studies import StudyService
from kubetrader_dashboard.services.submissions import SubmissionService
from kubetrader_dashboard.services.symbols import SymbolService
from kubetrader_dashboard.settings import Settings


@dataclass
class Services:
    settings: Settings
    store: ResultStore
    mlflow: MlflowService
    queue: QueueService
    studies: StudyService
    cluster: ClusterService
    live: LiveService
    submissions: SubmissionService
    logs: LogService
    symbols: SymbolService
    auth: Authenticator
    submit_limiter: RateLimiter
    login_limiter: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        cluster = ClusterService(settings.kubernetes, settings.namespace)
        store = ResultStore(settings.results_dir, settings.resolved_index_path)
        queue = QueueService(settings.effective_redis_url, local_default=settings.redis_is_local_default)
        return cls(
            settings=settings,
            store=store,
            mlflow=MlflowService(
                settings.mlflow_tracking_uri,
                local_db=defaults.mlflow_db(settings.data_dir) if settings.local_defaults else None,
                ui_url=settings.mlflow_ui_url,
                cache_seconds=settings.mlflow_cache_seconds,
            ),
            queue=queue,
            studies=StudyService(settings.optuna_storage, settings.optuna_journal_dir),
            cluster=cluster,
            live=LiveService(settings.live_runner_url, settings.runner_token.get_secret_value() or None),
            submissions=SubmissionService(
                results_dir=settings.results_dir,
                cluster=cluster,
                queue=queue,
                optuna_storage=settings.optuna_storage,
                workers=settings.submit_workers,
                namespace=settings.namespace,
            ),
            logs=LogService(settings.results_dir, store, cluster),
            symbols=SymbolService(settings.data_dir),
            auth=Authenticator.from_settings(settings),
            submit_limiter=RateLimiter(settings.submit_rate_limit, settings.submit_rate_window_seconds),
            login_limiter=RateLimiter(settings.login_rate_limit, 60.0),
        )

    def close(self) -> None:
        self.submissions.shutdown()
        self.store.close()
