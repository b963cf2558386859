"""What the SIP shell and the call side offer each other, as two small interfaces.

:class:`~gateway.sip.service.SipService` is given a :class:`CallSide` at construction
(``gateway.calls.CallManager`` in the daemon) and hands itself over as the call side's
:class:`SipControl` (``CallSide.bind``), so the SIP package never imports the layer above it.

Layer: pure core (interfaces only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from gateway.sip.core import MediaOffer
from gateway.sip.dialog import CallMetadata
from gateway.sip.sdp import AnswerPlan
from gateway.sip.siprec import RecordingMetadata


class SipControl(Protocol):
    """What the call side may ask of SIP, by the gateway's call id."""

    def answer(self, call_id: str, ports: Sequence[int | None]) -> None:
        """200 OK with our media ports, one per m-line (None: that stream refused)."""

    def reject(self, call_id: str, status: int, reason: str) -> None:
        """A final error response to the INVITE."""

    def hangup(self, call_id: str, reason: str) -> bool:
        """BYE (or CANCEL/error before answer); False if SIP no longer knows the call."""


class CallSide(Protocol):
    """What SIP tells the call side, and asks of it, over a call's life."""

    @property
    def active(self) -> int:
        """Calls the call side holds (offered and not yet torn down)."""

    def bind(self, sip: SipControl) -> None:
        """Called once by the SIP service it was handed to."""

    def offered(self, call_id: str, meta: CallMetadata, plan: AnswerPlan,
                media: MediaOffer | None) -> None: ...

    def metadata_updated(self, call_id: str, metadata: RecordingMetadata | None,
                         error: str | None) -> None: ...

    def answered(self, call_id: str) -> None: ...

    def confirmed(self, call_id: str) -> None: ...

    def media_changed(self, call_id: str, plan: AnswerPlan) -> None: ...

    def ended(self, call_id: str, reason: str, by: str, answered: bool) -> None: ...

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once no call is left (teardowns finished), False after ``timeout_s``."""

    async def stop(self) -> None: ...

    def summary(self, call_id: str) -> dict[str, Any] | None: ...

    def summaries(self) -> list[dict[str, Any]]: ...
