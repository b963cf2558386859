"""Consent per call and channel, with evidence, and its withdrawal (issue 19).

- :mod:`~gateway.consent.policy` (pure): :class:`ConsentRecord`, the decision from a call's
  facts (SIP header, rules, SIPREC metadata) and the keypad question.
- :mod:`~gateway.consent.store`: :class:`ConsentStore`, SQLite in
  ``<state_dir>/consent.sqlite3`` (what the dataset export asks).
- :mod:`~gateway.consent.live`: the daemon's side: decisions of live calls, events, the
  IVR question, the control API's grants and withdrawals.
- :mod:`~gateway.consent.cli`: ``asr-gateway consent grant|withdraw|show``.

Layer: package.
"""

from gateway.consent.policy import ConsentRecord
from gateway.consent.store import ConsentStore, ConsentWithdrawnError

__all__ = ["ConsentRecord", "ConsentStore", "ConsentWithdrawnError"]
