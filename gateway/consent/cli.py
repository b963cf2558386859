"""``asr-gateway consent grant|withdraw|show``: the consent store from the command line.

Reads ``storage.state_dir`` from ``--config`` (the built-in defaults without one) and opens
``<state_dir>/consent.sqlite3`` directly, so it works with the daemon stopped or running
(WAL). ``grant`` is for material whose consent was obtained elsewhere (a batch-transcribed
recording, a signed form): source ``cli``, the ``--basis`` as its evidence. ``withdraw``
records the withdrawal: the conversation is left out of every later export. ``show``
prints the conversation's decisions and withdrawals as JSON. A withdrawal made here reaches
the store only (no ``consent.withdrawn`` event: use the HTTP route for that).

Exit status: 0 done; 1 unknown conversation, or a grant of a withdrawn one; 2 setup error
(bad config, the store cannot be opened).

Layer: shell.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.consent.live import conversation_view
from gateway.consent.policy import SOURCE_CLI, ConsentRecord, ConsentValueError, parse_channels
from gateway.consent.store import ConsentStore, ConsentStoreError, ConsentWithdrawnError

EXIT_OK, EXIT_REFUSED, EXIT_SETUP = 0, 1, 2
DESCRIPTION = """\
The consent store (<storage.state_dir>/consent.sqlite3): record a grant obtained elsewhere,
withdraw a conversation's consent (left out of every later export; the withdrawal is kept),
or show a conversation's decisions as JSON. Works while the daemon runs."""


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    consent = sub.add_parser("consent", help="grant, withdraw or show a conversation's "
                             "consent to use its material for training", description=DESCRIPTION,
                             formatter_class=formatter)
    actions = consent.add_subparsers(dest="consent_command", metavar="ACTION", required=True)
    grant = actions.add_parser("grant", help="record a grant obtained outside the call",
                               formatter_class=formatter)
    _common(grant)
    grant.add_argument("--channel", action="append", default=[], metavar="CHANNEL",
                       help="agent or customer, repeatable (default: customer)")
    grant.add_argument("--purpose", default=None, metavar="PURPOSE",
                       help="what the grant is for (default: consent.purpose of the config)")
    grant.add_argument("--basis", required=True, metavar="TEXT",
                       help="the evidence: where and how consent was given (no personal data)")
    grant.add_argument("--call-id", default=None, metavar="ID",
                       help="the call the grant is for (default: the conversation id)")
    withdraw = actions.add_parser("withdraw", help="withdraw a conversation's consent",
                                  formatter_class=formatter)
    _common(withdraw)
    withdraw.add_argument("--reason", required=True, metavar="TEXT",
                          help="why (kept with the withdrawal)")
    show = actions.add_parser("show", help="a conversation's consent as JSON",
                              formatter_class=formatter)
    _common(show)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="the gateway's config file (its storage.state_dir); default: "
                             "the built-in defaults")
    parser.add_argument("conversation_id", metavar="CONVERSATION_ID",
                        help="the conversation (conversation_id in events and outputs)")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config) if args.config is not None else GatewayConfig()
        store = ConsentStore.for_state_dir(config.storage.state_dir)
    except (ConfigError, ConsentStoreError) as exc:
        print(f"asr-gateway consent: {exc}", file=sys.stderr)
        return EXIT_SETUP
    try:
        return _ACTIONS[args.consent_command](args, config, store)
    finally:
        store.close()


def _grant(args: argparse.Namespace, config: GatewayConfig, store: ConsentStore) -> int:
    try:
        channels = parse_channels(args.channel, ("customer",))
    except ConsentValueError as exc:
        print(f"asr-gateway consent grant: {exc}", file=sys.stderr)
        return EXIT_SETUP
    conv = args.conversation_id
    purpose = args.purpose or config.consent.purpose
    at = round(time.time(), 6)
    try:
        for channel in channels:
            store.record(ConsentRecord(
                conversation_id=conv, call_id=args.call_id or conv, channel=channel,
                granted=True, purpose=purpose, source=SOURCE_CLI, at=at,
                policy_version=config.consent.policy_version, evidence=args.basis[:200]))
    except ConsentWithdrawnError as exc:
        print(f"asr-gateway consent grant: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    _print(conversation_view(store, conv, purpose))
    return EXIT_OK


def _withdraw(args: argparse.Namespace, config: GatewayConfig, store: ConsentStore) -> int:
    conv = args.conversation_id
    if not store.known(conv):
        print(f"asr-gateway consent withdraw: unknown conversation {conv} (no consent "
              "recorded for it)", file=sys.stderr)
        return EXIT_REFUSED
    count = store.withdraw(conversation_id=conv, reason=args.reason, at=round(time.time(), 6),
                           source=SOURCE_CLI)
    _print({"conversation_id": conv, "withdrawn": True, "grants_withdrawn": count})
    return EXIT_OK


def _show(args: argparse.Namespace, config: GatewayConfig, store: ConsentStore) -> int:
    conv = args.conversation_id
    if not store.known(conv):
        print(f"asr-gateway consent show: unknown conversation {conv}", file=sys.stderr)
        return EXIT_REFUSED
    _print(conversation_view(store, conv, config.consent.purpose))
    return EXIT_OK


def _print(view: dict[str, Any]) -> None:
    print(json.dumps(view, indent=2))


_ACTIONS = {"grant": _grant, "withdraw": _withdraw, "show": _show}
