"""Hub mode's network guard: a deadline on every call to the Hub (see :mod:`vlmstudy.zoo.hub_guard`
for the whole story; its names are re-exported there).

:class:`HubProbe` asks the endpoint for one answer within ``$VLMSTUDY_HUB_TIMEOUT`` seconds
(default 30) before anything is fetched; :func:`bound_hub_calls` caps every phase of every
request huggingface_hub's shared client sends at that deadline; :func:`fetch_config` reads a
config.json from the cache or, under the deadline, from the Hub.
"""

from __future__ import annotations

import math
import os
import threading
import time

from ..errors import ConfigError

HUB_TIMEOUT_ENV = "VLMSTUDY_HUB_TIMEOUT"
#: Seconds the Hub may take to answer a request (``$VLMSTUDY_HUB_TIMEOUT`` overrides it).
DEFAULT_HUB_TIMEOUT = 30.0


class HubUnreachable(ConnectionError):
    """The Hub endpoint did not answer within the deadline, or could not be reached at all."""


def hub_timeout() -> float:
    """The deadline in seconds for one Hub request: ``$VLMSTUDY_HUB_TIMEOUT`` or 30."""
    raw = os.environ.get(HUB_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_HUB_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{HUB_TIMEOUT_ENV}={raw!r} is not a number of seconds above 0; use e.g. "
                          f"{HUB_TIMEOUT_ENV}=30 (the default) or unset it.")
    return value


def hub_offline() -> bool:
    """True when huggingface_hub is in offline mode (``HF_HUB_OFFLINE=1``): no request is sent."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _cap_timeouts(request) -> None:
    """httpx2 request hook: no phase of this request may wait longer than the deadline."""
    try:
        limit = hub_timeout()
    except ConfigError:  # reported by bound_hub_calls(); a request hook must not raise
        limit = DEFAULT_HUB_TIMEOUT
    timeouts = dict(request.extensions.get("timeout") or {})
    for phase in ("connect", "read", "write", "pool"):
        if timeouts.get(phase) is None or timeouts[phase] > limit:
            timeouts[phase] = limit
    request.extensions["timeout"] = timeouts


def bound_hub_calls() -> None:
    """Cap the timeouts of every request huggingface_hub's shared client sends (idempotent).

    The hook goes on the client :func:`huggingface_hub.get_session` returns, so it also holds for
    a client from the user's own ``set_client_factory``; a new client (after ``close_session``)
    gets it at the next hub-mode load.
    """
    from huggingface_hub.utils import get_session

    hub_timeout()  # a bad $VLMSTUDY_HUB_TIMEOUT is a ConfigError here, not inside httpx2
    session = get_session()
    hooks = session.event_hooks
    if _cap_timeouts not in hooks["request"]:
        session.event_hooks = {"request": [*hooks["request"], _cap_timeouts], "response": list(hooks["response"])}


class HubProbe:
    """One ``HEAD <endpoint>/<repo_id>/resolve/main/config.json`` (the endpoint's root when
    ``repo_id`` is None), sent at once from a daemon thread with the deadline as its per-phase
    timeout, so it ends on its own; :meth:`wait` gives the answer. Starting it before a load tries
    the local cache lets the two overlap: a load that must go online waits at most ``timeout``
    seconds in all, not the cache attempt plus the deadline."""

    def __init__(self, repo_id: str | None = None, timeout: float | None = None):
        from huggingface_hub import constants

        self.timeout = hub_timeout() if timeout is None else float(timeout)
        self.endpoint = constants.ENDPOINT
        self.url = f"{self.endpoint}/{repo_id}/resolve/main/config.json" if repo_id else f"{self.endpoint}/"
        self._outcome: dict = {}
        self._started = time.monotonic()
        self._worker = threading.Thread(target=self._ask, name="vlmstudy-hub-probe", daemon=True)
        self._worker.start()

    def _ask(self) -> None:
        from huggingface_hub.utils import build_hf_headers, get_session

        try:
            response = get_session().head(self.url, headers=build_hf_headers(), timeout=self.timeout,
                                          follow_redirects=False)
            self._outcome["status"] = response.status_code
        except Exception as err:  # any failure means "no answer"; wait() reports it
            self._outcome["error"] = err

    def wait(self) -> int:
        """The HTTP status the endpoint answered (any status counts as an answer), once it came.

        Raises :class:`HubUnreachable` when no answer came within ``timeout`` seconds of wall-clock
        time since the probe started (DNS and TLS included), or the request failed (refused, no
        DNS, TLS error)."""
        self._worker.join(max(0.0, self.timeout - (time.monotonic() - self._started)))
        if "status" in self._outcome:
            return self._outcome["status"]
        err = self._outcome.get("error")
        if err is None or "timeout" in type(err).__name__.lower():
            raise HubUnreachable(f"the Hub endpoint {self.endpoint} did not answer within {self.timeout:g} s "
                                 f"(a stalled proxy or network; the limit is ${HUB_TIMEOUT_ENV})")
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise HubUnreachable(f"the Hub endpoint {self.endpoint} could not be reached ({type(err).__name__}: {reason})")


def probe_hub(repo_id: str | None = None, timeout: float | None = None) -> int:
    """The HTTP status the Hub answers within ``timeout`` seconds (default :func:`hub_timeout`),
    or :class:`HubUnreachable`: ``HubProbe(repo_id, timeout).wait()``."""
    return HubProbe(repo_id, timeout).wait()


def start_hub_probe(repo_id: str) -> HubProbe | None:
    """What a hub-mode load calls first: cap the shared client's timeouts (:func:`bound_hub_calls`)
    and start a :class:`HubProbe` for ``repo_id``. None offline (``HF_HUB_OFFLINE=1``: nothing is
    sent) or for a local path."""
    if hub_offline() or os.path.exists(os.path.expanduser(str(repo_id))):
        return None
    bound_hub_calls()
    return HubProbe(repo_id)


def fetch_config(repo_id: str):
    """``AutoConfig`` of a local folder or a Hub repo: the local cache first, then the Hub under
    the deadline (:func:`start_hub_probe`). Raises ``OSError`` (:class:`HubUnreachable` for a
    stalled or unreachable endpoint) or ``ValueError`` as ``AutoConfig.from_pretrained`` does."""
    from transformers import AutoConfig

    if os.path.exists(os.path.expanduser(str(repo_id))):
        return AutoConfig.from_pretrained(repo_id)
    probe = start_hub_probe(repo_id)
    try:
        return AutoConfig.from_pretrained(repo_id, local_files_only=True)
    except OSError:
        if probe is None:  # offline: nothing more to try
            raise
    probe.wait()
    return AutoConfig.from_pretrained(repo_id)
