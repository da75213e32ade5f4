"""Sampler adaptations: ask/tell studies (the driver, not `study.optimize`, runs the loop), and
CMA-ES state that is signed before Optuna unpickles it."""

from __future__ import annotations

import pickle
import secrets
from collections.abc import Sequence
from typing import Any

import optuna

from kubetrader.errors import FatalError
from kubetrader.optimize import signing


def vectorized_tpe_log_ndtr() -> bool:
    """Let Optuna's TPE compute log Phi with SciPy's vectorized `scipy.special.log_ndtr`; True once done.

    Why: TPE's acquisition evaluates the Gaussian mass of every candidate under every past trial,
    and Optuna computes each log Phi in a Python function called per array element
    (`_truncnorm._log_ndtr` is `np.frompyfunc(_log_ndtr_single)`, optuna/samplers/_tpe/_truncnorm.py,
    a port of SciPy's code so Optuna need not depend on SciPy). That was 40-70 % of the study driver's
    time per TPE ask over 1,000 trials. SciPy (a dependency of ours) has the same function compiled;
    the two agree within 1e-12 (SciPy's is the more exact near x = 6; tests/optimize/test_samplers.py),
    so a seeded study stays as reproducible as before. Only the module's own global is replaced, and
    only on the Optuna layout it was checked against; on another layout TPE keeps Optuna's function
    (slower, same result).
    """
    import scipy.special
    from optuna.samplers._tpe import _truncnorm

    if getattr(_truncnorm, "_log_ndtr", None) is None or not hasattr(_truncnorm, "_log_ndtr_single"):
        return False
    _truncnorm._log_ndtr = scipy.special.log_ndtr
    return True


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its `study.stop()` on the last grid point.

    `GridSampler.after_trial` calls `study.stop()` once every grid point has been
    visited, and `Study.stop` raises RuntimeError outside `study.optimize` ("`Study.stop`
    is supposed to be invoked inside an objective function or a callback",
    optuna/study/study.py). The study driver tells results through `study.tell`, so the
    last tell of a grid crashed. The driver checks `is_exhausted` before every ask
    instead, which ends the study cleanly with the whole grid.
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


def grid_sampler(search_space: dict[str, list[Any]], seed: int | None) -> AskTellGridSampler:
    return AskTellGridSampler(search_space, seed=seed)


class StudyStateTamperedError(FatalError):
    """A trial's stored sampler state does not carry our signature: it is never unpickled."""


class SignedCmaEsSampler(optuna.samplers.CmaEsSampler):
    """Optuna's CMA-ES sampler whose pickled optimizer is signed and verified before loading.

    Optuna stores `pickle.dumps(optimizer).hex()` in chunks of at most 2045 characters
    (`cma:optimizer:0..n`, `sepcma:` when separable) and `_restore_optimizer` unpickles the
    newest trial's chunks on every ask (optuna/samplers/_cmaes.py, optuna 5.0). Here the
    stored string is `<HMAC-SHA256 hex of the pickle bytes><pickle hex>`, split the same
    way; on restore the chunks must be exactly `:0..n-1` and the HMAC must match
    (`hmac.compare_digest`) before `pickle.loads` sees a byte. Anything else raises
    StudyStateTamperedError naming the trial (the driver exits 2), never a fallback to
    unsigned state. The key comes from kubetrader.optimize.signing.
    """

    def __init__(self, *, key: bytes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._signing_key = key

    def _split_optimizer_str(self, optimizer_str: str) -> dict[str, str]:
        signature = signing.sign(self._signing_key, bytes.fromhex(optimizer_str))
        return super()._split_optimizer_str(signature + optimizer_str)

    def _restore_optimizer(self, completed_trials: list[optuna.trial.FrozenTrial]) -> Any:
        prefix = self._attr_key_optimizer + ":"
        for trial in reversed(completed_trials):
            chunks = {key: value for key, value in trial.system_attrs.items() if key.startswith(prefix)}
            if not chunks:
                continue
            return self._verified_load(trial.number, chunks, prefix)
        return None

    def _verified_load(self, number: int, chunks: dict[str, Any], prefix: str) -> Any:
        def refuse(problem: str) -> StudyStateTamperedError:
            return StudyStateTamperedError(
                f"trial {number}: its stored CMA-ES state ({prefix}*) {problem}; refusing to unpickle it "
                "(the study storage was written by something other than this sampler and its key)"
            )

        expected = [f"{prefix}{i}" for i in range(len(chunks))]
        if sorted(chunks) != sorted(expected) or not all(isinstance(v, str) for v in chunks.values()):
            raise refuse("is not a sequence of string chunks")
        stored = "".join(chunks[key] for key in expected)
        signature, payload_hex = stored[: signing.SIGNATURE_HEX_LENGTH], stored[signing.SIGNATURE_HEX_LENGTH :]
        try:
            payload = bytes.fromhex(payload_hex)
        except ValueError:
            raise refuse("is not hexadecimal") from None
        if not signing.verify(self._signing_key, payload, signature):
            raise refuse("has no valid signature")
        return pickle.loads(payload)


def cmaes_sampler(*, seed: int | None, startup_trials: int, storage_url: str | None) -> SignedCmaEsSampler:
    """The CMA-ES sampler for a study on `storage_url` (refused without a key where it is shared).

    A study in this process's memory (`storage_url` None) is read by nobody else: a key
    of its own, thrown away with it."""
    key = secrets.token_bytes(32) if storage_url is None else signing.signing_key(storage_url)
    return SignedCmaEsSampler(key=key, seed=seed, n_startup_trials=startup_trials)
