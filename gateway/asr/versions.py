"""Makes Triton serve the configured version of the ASR model before the gateway uses it.

On a reload (SIGHUP) :func:`prepare_version` asks Triton to load the model again
(``load_model``: Triton's explicit model control, what the bundled Triton runs), so a version
folder installed since then is served next to the running one (the model's version policy,
``latest { num_versions: 2 }`` for asr_streaming_nemo), and waits until the wanted version
(``""``: the newest) is READY. Only then does the hub start new sequences on it; the
sequences already streaming keep their version. Triton reloads a version whose folder
changed since its last load and drops that version's open sequences: the Python backend
writes its bytecode cache into a version folder the first time it imports it, so a version
loaded here for the first time is loaded once more, before any call uses it.

A Triton that does not take load requests (another model control mode) keeps serving what
it has: the version is used if it is ready (``asr.model_load_unsupported`` says so). A
version that does not exist or does not load is an error: the current version stays.

Layer: shell.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import aio as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.asr.stream import newest_version
from gateway.logs import get_logger

LOAD_TIMEOUT_S = 300.0        # a model load on a busy CPU machine takes a while
_NOT_EXPLICIT = "explicit model load / unload is not allowed"


@dataclass(frozen=True, slots=True)
class VersionReady:
    """The outcome: ``version`` is served and ready (``error`` None), or why not."""

    version: str
    error: str | None = None


async def prepare_version(url: str, model: str, wanted: str,
                          timeout_s: float = LOAD_TIMEOUT_S) -> VersionReady:
    """Load ``model`` again and wait for ``wanted`` (``""``: the newest version) to be READY."""
    client = grpcclient.InferenceServerClient(url=url)
    try:
        return await _prepare(client, model, wanted, timeout_s)
    except InferenceServerException as exc:
        return VersionReady("", _reason(exc))
    finally:
        await client.close()


async def _prepare(client: grpcclient.InferenceServerClient, model: str, wanted: str,
                   timeout_s: float) -> VersionReady:
    before = wanted or await _newest(client, model)
    was_ready = bool(before) and await client.is_model_ready(model, before)
    loaded = await _load(client, model, timeout_s)
    version = wanted or await _newest(client, model)
    if not version or not await client.is_model_ready(model, version):
        return VersionReady("", f"model {model} version {wanted or 'latest'} is not ready: "
                                "no such version folder, outside the model's version_policy, "
                                "or it failed to load (see Triton's log)")
    if loaded and not (was_ready and version == before):
        await _load(client, model, timeout_s)     # its first load wrote into its folder
    return VersionReady(version)


async def _load(client: grpcclient.InferenceServerClient, model: str, timeout_s: float) -> bool:
    """True when Triton (re)loaded the model; False when it takes no load requests."""
    try:
        await client.load_model(model, client_timeout=timeout_s)
    except InferenceServerException as exc:
        if _NOT_EXPLICIT not in str(exc):
            raise
        get_logger("asr").warning(
            "asr.model_load_unsupported", model=model,
            reason="Triton does not run --model-control-mode=explicit: the version is used "
                   "if it is ready, but not loaded")
        return False
    return True


async def _newest(client: grpcclient.InferenceServerClient, model: str) -> str:
    """The newest ready version; ``""`` when none is (the model is not loaded)."""
    try:
        meta = await client.get_model_metadata(model, as_json=True)
    except InferenceServerException:
        return ""
    return newest_version([str(v) for v in meta.get("versions", [])])


def _reason(exc: InferenceServerException) -> str:
    return (exc.message() or str(exc))[:500]
