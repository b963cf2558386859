"""The pure bearer-token checks of the HTTP side port (gateway.http_auth)."""

from __future__ import annotations

import pytest

from gateway.http_auth import (
    EVENTS_SUBPROTOCOL,
    TicketBook,
    bearer_credentials,
    offered_subprotocols,
    subprotocol_auth,
)


@pytest.mark.parametrize(("header", "expected"), [
    ("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER abc", "abc"),
    ("  Bearer   abc  ", "abc"), ("\tbearer\tabc", "abc"),
    ("Basic abc", None), ("Bearer", None), ("", None), ("abc", None), ("Bearerabc", None)])
def test_bearer_credentials(header: str, expected: str | None) -> None:
    assert bearer_credentials(header) == expected


def test_offered_subprotocols_split_and_trim() -> None:
    assert offered_subprotocols(" a , b,,c ") == ["a", "b", "c"]
    assert offered_subprotocols("") == []


def test_subprotocol_auth_answers_without_echoing_the_token_when_it_can() -> None:
    entry = "asr-gateway.bearer.tok"
    assert subprotocol_auth([EVENTS_SUBPROTOCOL, entry], "tok").answer == EVENTS_SUBPROTOCOL
    assert subprotocol_auth([entry], "tok").answer == entry
    assert subprotocol_auth(["asr-gateway.bearer.bad", entry], "tok").ok
    assert not subprotocol_auth(["asr-gateway.bearer.bad"], "tok").ok
    assert not subprotocol_auth(["asr-gateway.bearer."], "tok").ok
    assert not subprotocol_auth(["tok"], "tok").ok
    assert not subprotocol_auth([], "tok").ok


def test_ticket_is_single_use_and_expires() -> None:
    book = TicketBook(ttl_s=30)
    book.issue("t1", now=100.0)
    book.issue("t2", now=100.0)
    assert book.redeem("t1", now=110.0)
    assert not book.redeem("t1", now=110.0)          # used up
    assert not book.redeem("t2", now=130.0)          # expired at 130
    assert not book.redeem("never-issued", now=110.0)
    assert len(book) == 0


def test_expired_tickets_are_forgotten_and_outstanding_ones_are_bounded() -> None:
    book = TicketBook(ttl_s=30, max_tickets=3)
    for i in range(5):
        book.issue(f"t{i}", now=float(i))
    assert len(book) == 3
    assert not book.redeem("t0", now=5.0) and not book.redeem("t1", now=5.0)   # dropped oldest
    assert book.redeem("t4", now=5.0)
    book.issue("late", now=100.0)
    assert len(book) == 1                                # the rest expired


def test_the_book_keeps_no_ticket_text() -> None:
    book = TicketBook()
    book.issue("secret-ticket", now=0.0)
    assert "secret-ticket" not in repr(vars(book) if hasattr(book, "__dict__") else "")
    assert all(isinstance(k, bytes) and b"secret-ticket" not in k
               for k in book._expires)
