"""The configuration as the Settings tab shows it: every value, every secret masked.

Masked means: SecretStr fields show only whether they are set, and URLs lose their
user and password. Nothing else of a secret leaves the process.
"""

from __future__ import annotations

from pydantic import SecretStr

from kubetrader.redaction import redact_uri
from kubetrader_dashboard.models.operations import SettingEntry, SettingsView
from kubetrader_dashboard.settings import Settings

MASK = "********"


def settings_view(settings: Settings) -> SettingsView:
    entries = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        env = alias or f"KUBETRADER_{name.upper()}"
        secret = isinstance(value, SecretStr)
        if secret:
            shown: str | None = MASK if value.get_secret_value() else None
        elif value is None:
            shown = None
        else:
            shown = redact_uri(str(value))
        entries.append(SettingEntry(name=name, env=env, value=shown, secret=secret, description=field.description))
    return SettingsView(entries=entries)
