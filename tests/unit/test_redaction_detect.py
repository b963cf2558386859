"""The PII detectors over one utterance's tokens: every entity in many surface forms, the
PII-free numbers that must stay, context from the other party, cues in the utterance,
custom patterns, span boundaries, and what an agent's utterance asks for."""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Sequence

import pytest

from gateway.redaction.detect import (
    aba_ok,
    asked_for,
    card_brand,
    detect,
    iban_ok,
    luhn_ok,
    trailing_cues,
)
from gateway.redaction.entities import (
    BANK_ACCOUNT,
    BUILTIN_ENTITIES,
    CARD,
    CVV,
    DOB,
    EMAIL,
    EXPIRY,
    IBAN,
    PHONE,
    ROUTING,
    SSN,
    CustomPattern,
    Found,
)

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def spans(text: str, context: Collection[str] = (), *,
          custom: Sequence[CustomPattern] = (),
          entities: Collection[str] = BUILTIN_ENTITIES) -> list[tuple[str, str]]:
    """(entity, the tokens it covers) for each span found in ``text``."""
    tokens = text.split()
    return [(f.entity, " ".join(tokens[f.start:f.end]))
            for f in detect(tokens, context=context, custom=custom, entities=entities)]


# ------------------------------------------------------------------ cards

@pytest.mark.parametrize(("text", "span"), [
    ("my card number is 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("4111-1111-1111-1111 thanks", "4111-1111-1111-1111"),
    ("it's 4111111111111111.", "4111111111111111."),
    ("four one one one one one one one one one one one one one one one",
     "four one one one one one one one one one one one one one one one"),
    ("forty one eleven eleven eleven eleven eleven eleven eleven",
     "forty one eleven eleven eleven eleven eleven eleven eleven"),
    ("4111 one one one one one one one one one one one one",     # a mixture
     "4111 one one one one one one one one one one one one"),
    ("5555 5555 5555 4444 is the mastercard", "5555 5555 5555 4444"),
    ("2223 0031 2200 3222", "2223 0031 2200 3222"),                  # mastercard 2-series
    ("3782 822463 10005", "3782 822463 10005"),                     # amex, 15 digits
    ("6011 1111 1111 1117", "6011 1111 1111 1117"),                 # discover
    ("3056 9309 0259 04", "3056 9309 0259 04"),                     # diners, 14 digits
    ("3530 1113 3330 0000", "3530 1113 3330 0000"),                 # jcb
    ("6200 0000 0000 0005", "6200 0000 0000 0005"),                 # unionpay
    ("6759 6498 2643 8453", "6759 6498 2643 8453"),                 # maestro
    ("double one four one one one one one one one one one one one one",
     None),                                                          # not luhn: no card
])
def test_a_luhn_valid_card_is_found_without_context(text: str, span: str | None) -> None:
    got = spans(text)
    assert got == ([] if span is None else [(CARD, span)])


def test_whisper_commas_after_card_words_in_the_utterance() -> None:
    # Whisper writes 4111 1111 1111 1111 as a number with commas: digits garbled, no Luhn
    assert spans("my card number is 4,111, 111, 111, 111,") == [
        (CARD, "4,111, 111, 111, 111,")]
    assert spans("4,111, 111, 111, 111,") == []


@pytest.mark.parametrize("word", ["card", "visa", "mastercard", "amex", "credit", "debit"])
def test_a_long_run_failing_luhn_is_a_card_after_card_words(word: str) -> None:
    assert spans(f"the {word} is 1234 5678 9012 3456") == [(CARD, "1234 5678 9012 3456")]
    assert spans("the long number is 1234 5678 9012 3456") == [
        (CARD, "1234 5678 9012 3456")]


def test_a_long_run_failing_luhn_without_card_words_is_not_a_card() -> None:
    assert spans("it is 1234 5678 9012 3456") == []


@pytest.mark.parametrize("text", ["4111", "four one one one", "forty one eleven", "1111.",
                                  "4111 1111", "4111 1111 1111 1112", "411111111111"])
def test_card_context_makes_any_group_of_four_or_more_digits_a_card(text: str) -> None:
    assert spans(text, {CARD}) == [(CARD, text)]
    assert spans(f"yeah it's {text} okay", {CARD}) == [(CARD, text)]


def test_card_context_keeps_shorter_runs() -> None:
    assert spans("i have 2 of them", {CARD}) == []
    assert spans("the last four are 1111", {CARD}) == [(CARD, "1111")]


def test_last4_is_the_last_four_digits_of_the_card_only() -> None:
    tokens = "card 4111 1111 1111 1234".split()
    (card,) = detect(tokens)
    assert card == Found(CARD, 1, 5, "luhn", "1234") or card.last4 == "1234"
    assert card.last4 == "1234"
    (cvv,) = detect("cvv 123".split())
    assert cvv.last4 is None


def test_a_card_with_cvv_and_expiry_in_one_breath_is_split() -> None:
    assert spans("4111 1111 1111 1111 12 27 123", {CARD}) == [
        (CARD, "4111 1111 1111 1111"), (EXPIRY, "12 27"), (CVV, "123")]
    (card, cvv) = detect("4111 1111 1111 1111, 123".split(), context={CARD})
    assert card.last4 == "1111" and cvv.entity == CVV
    assert spans("twelve twenty seven one two three", {EXPIRY, CVV}) == [
        (EXPIRY, "twelve twenty seven"), (CVV, "one two three")]


def test_a_luhn_valid_card_run_on_into_more_digits_is_split_without_context() -> None:
    card = "four" + " one" * 15
    text = card + " twelve twenty seven one two three"
    assert spans(text) == [(CARD, card),
                           (EXPIRY, "twelve twenty seven"), (CVV, "one two three")]
    assert spans("4111 1111 1111 1111 123") == [(CARD, "4111 1111 1111 1111"), (CVV, "123")]
    assert spans("12 27 123") == []


def test_card_in_a_full_sentence() -> None:
    text = ("my card number is 4111 1111 1111 1111 and it expires 12/27 "
            "and the cvv is 123")
    assert spans(text) == [(CARD, "4111 1111 1111 1111"), (EXPIRY, "12/27"), (CVV, "123")]


# ------------------------------------------------------------------ cvv and expiry

@pytest.mark.parametrize(("text", "context", "span"), [
    ("the security code is 123", (), "123"),
    ("cvv 123", (), "123"),
    ("CVV: 1234", (), "1234"),
    ("the three digits on the back are seven three one", (), "seven three one"),
    ("the cvc is nine oh four", (), "nine oh four"),
    ("123", {CVV}, "123"),
    ("it's one two three", {CVV}, "one two three"),
    ("1234", {CVV}, "1234"),                        # amex CID
    ("123", {CARD, CVV}, "123"),
])
def test_cvv(text: str, context: Collection[str], span: str) -> None:
    assert spans(text, context) == [(CVV, span)]


@pytest.mark.parametrize("text", ["the code is 123", "123", "it's one two three",
                                  "my security question"])
def test_three_digits_without_a_cvv_cue_stay(text: str) -> None:
    assert spans(text) == []


@pytest.mark.parametrize(("text", "context", "span"), [
    ("it expires 12/27", (), "12/27"),
    ("expiry 12/2027", (), "12/2027"),
    ("the expiration date is oh nine twenty six", (), "oh nine twenty six"),
    ("valid thru 09/26", (), "09/26"),
    ("twelve twenty seven", {EXPIRY}, "twelve twenty seven"),
    ("09 26", {EXPIRY}, "09 26"),
    ("nine twenty six", {EXPIRY}, "nine twenty six"),
    ("zero nine slash two six", {CARD}, "zero nine slash two six"),
    ("12/27", {CARD}, "12/27"),
    ("oh nine twenty six", {CARD}, "oh nine twenty six"),
    ("twelve twenty seven", {CARD}, "twelve twenty seven"),
    ("september twenty twenty six", {CARD}, "september twenty twenty six"),
    ("it expires september 2026", (), "september 2026"),
    ("march twenty seven", {EXPIRY}, "march twenty seven"),
    ("it's march thirty two.", {EXPIRY}, "march thirty two."),
    ("july thirty.", {EXPIRY}, "july thirty."),
])
def test_expiry(text: str, context: Collection[str], span: str) -> None:
    assert spans(text, context) == [(EXPIRY, span)]


@pytest.mark.parametrize("text", ["12/27", "see you on 12/27", "twelve twenty seven",
                                  "september twenty twenty six", "09 26"])
def test_expiry_shapes_without_context_stay(text: str) -> None:
    assert spans(text) == []


# ------------------------------------------------------------------ ssn

@pytest.mark.parametrize(("text", "context", "span"), [
    ("it's 123-45-6789", (), "123-45-6789"),
    ("123 45 6789", (), "123 45 6789"),
    ("one two three four five six seven eight nine", (), None),
    ("my social is 123456789", (), "123456789"),
    ("my social security number is 078-05-1120", (), "078-05-1120"),
    ("123456789", {SSN}, "123456789"),
    ("it's 987654321", {SSN}, "987654321"),              # invalid area, but asked for
    ("the last four of my social are 6789", (), "6789"),
    ("six seven eight nine", {SSN}, "six seven eight nine"),
    ("last four six seven eight nine", {SSN}, "six seven eight nine"),
])
def test_ssn(text: str, context: Collection[str], span: str | None) -> None:
    expected = text if span is None else span
    assert spans(text, context) == [(SSN, expected)]


@pytest.mark.parametrize("text", [
    "000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000",
    "123456789", "123-456-789", "12345-6789", "my order number is 123-45-6789",
])
def test_not_an_ssn_without_context(text: str) -> None:
    assert spans(text) == []


@pytest.mark.parametrize("context", [(), {CARD}, {CARD, SSN}])
def test_after_the_speakers_own_ssn_cue_repeated_digits_stay_the_ssn(
        context: Collection[str]) -> None:
    """Whisper heard "five three six, two two, eight seven one four" as "53622" then "874 874"
    (two finals, judged together): 11 digits, but the speaker named them; an older card
    question must not make them a card."""
    text = "My Social Security number is 53622 874 874"
    assert spans(text, context) == [(SSN, "53622 874 874")]
    assert spans("53622 874 874") == []                      # no cue, no question: left alone


# ------------------------------------------------------------------ routing and account

@pytest.mark.parametrize(("text", "context", "expected"), [
    ("my routing number is 021000021", (), [(ROUTING, "021000021")]),
    ("aba 011000015", (), [(ROUTING, "011000015")]),
    ("zero two one zero zero zero zero two one", {ROUTING},
     [(ROUTING, "zero two one zero zero zero zero two one")]),
    ("routing 021000022", (), []),                        # checksum fails
    ("my account number is 12345678", (), [(BANK_ACCOUNT, "12345678")]),
    ("account 1234 5678 9012", (), [(BANK_ACCOUNT, "1234 5678 9012")]),
    ("the sort code is 12-34-56", (), [(BANK_ACCOUNT, "12-34-56")]),
    ("one two three four five six seven", {BANK_ACCOUNT},
     [(BANK_ACCOUNT, "one two three four five six seven")]),
    ("021000021", {ROUTING, BANK_ACCOUNT}, [(ROUTING, "021000021")]),
    ("12345678", {ROUTING, BANK_ACCOUNT}, [(BANK_ACCOUNT, "12345678")]),
    ("routing 021000021 account 12345678", (),
     [(ROUTING, "021000021"), (BANK_ACCOUNT, "12345678")]),
    ("my account number is 12345", (), []),              # too short
    ("the account balance is 12345678", (), []),         # the nearest cue is a balance
])
def test_routing_and_account(text: str, context: Collection[str],
                             expected: list[tuple[str, str]]) -> None:
    assert spans(text, context) == expected


def test_a_routing_number_needs_its_context() -> None:
    assert spans("it's 021000021") == []


# ------------------------------------------------------------------ iban

def iban(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in rearranged)) % 97
    return f"{country}{check:02d}{bban}"


@pytest.mark.parametrize(("text", "span"), [
    ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
    ("my iban is GB82WEST12345698765432.", "GB82WEST12345698765432."),
    ("iban DE89 3704 0044 0532 0130 00 thanks", "DE89 3704 0044 0532 0130 00"),
    ("gb82 west 1234 5698 7654 32", "gb82 west 1234 5698 7654 32"),
    ("G B eight two W E S T one two three four five six nine eight seven six five four "
     "three two", None),
    ("G B 82 W E S T 12345698765432", None),
    ("NL91 ABNA 0417 1643 00", "NL91 ABNA 0417 1643 00"),
])
def test_iban(text: str, span: str | None) -> None:
    assert spans(text) == [(IBAN, text if span is None else span)]


@pytest.mark.parametrize("text", ["GB83 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654",
                                  "XX82 WEST 1234 5698 7654 32", "it is at 10 to 5"])
def test_not_an_iban(text: str) -> None:
    assert [e for e, _ in spans(text)] != [IBAN]


def test_iban_check() -> None:
    assert iban_ok("GB82WEST12345698765432") and iban_ok("gb82west12345698765432")
    assert not iban_ok("GB82WEST12345698765433")
    assert not iban_ok("GB82WEST1234569876543")         # GB is 22 long


# ------------------------------------------------------------------ phone

@pytest.mark.parametrize(("text", "context", "span"), [
    ("(555) 123-4567", (), "(555) 123-4567"),
    ("it's 555-123-4567", (), "555-123-4567"),
    ("555.123.4567", (), "555.123.4567"),
    ("5551234567", (), "5551234567"),
    ("1-800-555-1234", (), "1-800-555-1234"),
    ("five five five one two three four five six seven", (),
     "five five five one two three four five six seven"),
    ("+44 20 7946 0958", (), "+44 20 7946 0958"),
    ("+4420 7946 0958", (), "+4420 7946 0958"),
    ("plus four four two zero seven nine four six zero nine five eight", (),
     "plus four four two zero seven nine four six zero nine five eight"),
    ("07700 900123", (), "07700 900123"),
    ("my phone number is 123 4567", (), "123 4567"),
    ("123 4567", {PHONE}, "123 4567"),
    ("you can reach me on 07700 900 123", (), "07700 900 123"),
])
def test_phone(text: str, context: Collection[str], span: str) -> None:
    assert spans(text, context) == [(PHONE, span)]


@pytest.mark.parametrize("text", [
    "555 1234",                           # seven digits, no context
    "my order number is 5551234567",      # order numbers are not phones
    "1234567890",                         # NANP area codes do not start with 1
    "it was 20 19 or 2020",
    "at 10:30 or 11:45",
    "room 1234",
    "the flight is 5551234567",
])
def test_not_a_phone(text: str) -> None:
    assert spans(text) == []


# ------------------------------------------------------------------ email

@pytest.mark.parametrize(("text", "span"), [
    ("write to john.smith@example.com please", "john.smith@example.com"),
    ("John.Smith@Example.co.uk.", "John.Smith@Example.co.uk."),
    ("it's john dot smith at example dot com", "john dot smith at example dot com"),
    ("j o h n at gmail dot com", "j o h n at gmail dot com"),
    ("my email is j a n e at gmail dot com", "j a n e at gmail dot com"),
    ("john underscore smith at example dot co dot uk thanks",
     "john underscore smith at example dot co dot uk"),
    ("it's john smith eighty five at yahoo dot com", "john smith eighty five at yahoo dot com"),
    ("jsmith at example.com", "jsmith at example.com"),
    ("john.smith at example dot com", "john.smith at example dot com"),
    ("mary dash jones at my dash company dot org", "mary dash jones at my dash company dot org"),
    ("sure, it's bob@example.com, yes", "bob@example.com,"),
    ("john smith at gmail com", "john smith at gmail com"),          # the dot went missing
    ("update my email to michaels7@example dot com?", "michaels7@example dot com?"),
    ("john smith, all one word, at gmail dot com.", "john smith, all one word, at gmail dot com."),
    ("it's k dot obrien, that's o b r i e n, at outlook dot com.",
     "k dot obrien, that's o b r i e n, at outlook dot com."),
    # Whisper's spacing around the dots (seen through a real call)
    ("My email is John. Smith at example .com", "John. Smith at example .com"),
    ("it's jane at gmail .co .uk, thanks", "jane at gmail .co .uk,"),
    ("my email is john smith at example. com", "john smith at example. com"),
])
def test_email(text: str, span: str) -> None:
    assert spans(text) == [(EMAIL, span)]


@pytest.mark.parametrize(("text", "context", "span"), [
    # Whisper through a real call heard "of" for "at"
    ("My email is john dot smith of example dot com.", (), "john dot smith of example dot com."),
    ("it's jane add gmail dot com", {EMAIL}, "jane add gmail dot com"),
    ("sure, mary jones and outlook dot co dot uk", {EMAIL}, "mary jones and outlook dot co dot uk"),
    # the "at" not heard at all
    ("my email is john smith example dot com", (), "john smith example dot com"),
    ("it's bob underscore lee yahoo dot com", {EMAIL}, "bob underscore lee yahoo dot com"),
])
def test_email_when_the_at_was_misheard(text: str, context: Collection[str], span: str) -> None:
    """In e-mail talk (a cue in the utterance or the agent's question) an "at" the ASR heard
    as another short word, or not at all, still makes an address."""
    assert spans(text, context) == [(EMAIL, span)]


@pytest.mark.parametrize("text", [
    "the website is example dot com", "a friend of example dot com",     # no e-mail talk
    "my email is on gmail dot com",                                      # a provider, no address
    "send the email to our office at example dot com",
])
def test_misheard_at_needs_email_talk_and_a_local_part(text: str) -> None:
    assert spans(text) == []


@pytest.mark.parametrize("text", [
    "meet me at the office", "i'm at home dot", "look at this", "at gmail dot", "at 5 pm",
    "email me at", "look at www dot example dot com", "we are based at example dot com",
    "i work at acme com",
    "i will meet john at noon. In the lobby",       # a trailing dot counts only in e-mail talk
])
def test_not_an_email(text: str) -> None:
    assert spans(text) == []


# ------------------------------------------------------------------ date of birth

@pytest.mark.parametrize(("text", "context", "span"), [
    ("my date of birth is 03/14/1985", (), "03/14/1985"),
    ("date of birth 14.03.1985", (), "14.03.1985"),
    ("dob 1985-03-14", (), "1985-03-14"),
    ("i was born on march fourteenth nineteen eighty five", (),
     "march fourteenth nineteen eighty five"),
    ("born the fourteenth of march 1985", (), "the fourteenth of march 1985"),
    ("my birthday is march 14th, 1985", (), "march 14th, 1985"),
    ("born march 14 1985", (), "march 14 1985"),
    ("born 14th march 1985", (), "14th march 1985"),
    ("born on the twenty first of june", (), "the twenty first of june"),
    ("it's oh three one four nineteen eighty five", {DOB},
     "oh three one four nineteen eighty five"),
    ("3/14/85", {DOB}, "3/14/85"),
    ("march fourteenth", {DOB}, "march fourteenth"),
    ("sure, it's nineteen ninety four, may twenty eighth?", {DOB},
     "nineteen ninety four, may twenty eighth?"),
])
def test_dob(text: str, context: Collection[str], span: str) -> None:
    assert spans(text, context) == [(DOB, span)]


@pytest.mark.parametrize("text", [
    "the meeting is on march 3rd", "03/14/1985", "march fourteenth nineteen eighty five",
    "we opened in 1985", "the fourteenth of march", "may i have a word",
])
def test_plain_dates_stay(text: str) -> None:
    assert spans(text) == []


def test_a_plain_date_is_not_a_card_group_in_card_context() -> None:
    assert spans("i got it on march 14 1985", {CARD}) == []


# ------------------------------------------------------------------ PII-free numbers

@pytest.mark.parametrize("text", [
    "my order number is 5 5 3 2 1",
    "order 5 5 3 2 1",
    "my order number is 12345678",
    "order number one two three four five six seven eight nine",
    "the ticket is 4111 1111",
    "it costs $19.99",
    "that's twenty nine ninety nine",
    "it was 19.99 dollars",
    "the total is 1,234.56",
    "see you at 10:30",
    "half past ten",
    "at ten thirty am",
    "march 3rd",
    "we are open 24/7",
    "we're open twenty four seven",
    "i need 2 boxes",
    "about 150 people",
    "the first, second and third",
    "in 2019",
    "back in nineteen ninety five",
    "room 412",
    "room four one two",
    "the ticket number is 88213",
    "it took three or four days",
    "one hundred and twenty items",
    "reference 12345678901234",
    "tracking number 1Z999AA10123456784",
    "call me in 5 minutes",
    "it's a 50 percent discount",
    "page 12 of 300",
    "", "hello",
])
def test_pii_free_numbers_are_not_found(text: str) -> None:
    assert spans(text) == []


@pytest.mark.parametrize("text", ["my order number is 4111 1111", "order 12345678",
                                  "the ticket is 1234", "it costs $19.99", "at 10:30",
                                  "for 3 days", "it was 1500 dollars", "about 2000 people",
                                  "it took 1234567 minutes"])
def test_pii_free_cues_override_the_agents_context(text: str) -> None:
    assert spans(text, {CARD, SSN, PHONE, CVV, BANK_ACCOUNT}) == []


# ------------------------------------------------------------------ context and cues

def test_the_utterance_cue_nearest_the_run_decides() -> None:
    assert spans("my phone is 555 123 4567 and my card is 4111 1111", ()) == [
        (PHONE, "555 123 4567"), (CARD, "4111 1111")]
    assert spans("my social is 123 45 6789 and my phone is 555 123 4567", {CARD}) == [
        (SSN, "123 45 6789"), (PHONE, "555 123 4567")]


def test_a_cue_after_the_run_counts_for_the_utterance() -> None:
    assert spans("4111 1111 1234 5678 that's my visa") == [(CARD, "4111 1111 1234 5678")]


def test_context_turns_short_runs_into_entities() -> None:
    assert spans("it's 4111") == []
    assert spans("it's 4111", {CARD}) == [(CARD, "4111")]
    assert spans("it's 123", {CVV}) == [(CVV, "123")]
    assert spans("it's 123456789", {SSN}) == [(SSN, "123456789")]
    assert spans("it's 1234567", {PHONE}) == [(PHONE, "1234567")]


def test_disabled_entities_are_not_reported_and_do_not_block_others() -> None:
    text = "my card is 4111 1111 1111 1111 and my email is bob@example.com"
    assert spans(text, entities={EMAIL}) == [(EMAIL, "bob@example.com")]
    assert spans(text, entities=()) == []


def test_the_code_is_a_cvv_only_where_cards_are_talked_about() -> None:
    assert spans("the code is 123") == []
    assert spans("the code is 123", {CARD}) == [(CVV, "123")]
    assert spans("january twenty five, and the code is 1 8 8.", {EXPIRY}) == [
        (EXPIRY, "january twenty five,"), (CVV, "1 8 8.")]


def test_three_or_four_digits_after_an_expiry_are_the_cvv() -> None:
    assert spans("06 32 and nine oh nine.", {EXPIRY}) == [(EXPIRY, "06 32"),
                                                          (CVV, "nine oh nine.")]
    assert spans("02/26 and 805.", {EXPIRY}) == [(EXPIRY, "02/26"), (CVV, "805.")]


def test_groups_read_in_card_context_are_not_split_into_expiry_and_cvv() -> None:
    assert spans("two nine eight one four three", {CARD}) == [
        (CARD, "two nine eight one four three")]


def test_a_phone_shaped_number_is_a_phone_when_phone_and_account_are_asked() -> None:
    assert spans("the number is 207 555 0180 thanks", {PHONE, BANK_ACCOUNT}) == [
        (PHONE, "207 555 0180")]
    assert spans("it's 12345678", {PHONE, BANK_ACCOUNT}) == [(BANK_ACCOUNT, "12345678")]
    assert spans("it's plus four four two oh seven nine four six oh two four one", {PHONE}) == [
        (PHONE, "plus four four two oh seven nine four six oh two four one")]


def test_an_ordered_context_tries_the_newest_ask_first() -> None:
    assert spans("seven oh eight oh.", {CARD, EXPIRY, CVV}) == [(CARD, "seven oh eight oh.")]
    assert spans("seven oh eight oh.", (CARD, EXPIRY, CVV)) == [(CVV, "seven oh eight oh.")]
    assert spans("it's 993680003", (ROUTING, BANK_ACCOUNT)) == [(BANK_ACCOUNT, "993680003")]
    assert spans("it's 993680003", (BANK_ACCOUNT, ROUTING)) == [(ROUTING, "993680003")]
    # the newest ask does not hide the others: a card number still is one
    assert spans("4111 1111 1111 1112", (CARD, CVV)) == [(CARD, "4111 1111 1111 1112")]


def test_three_digits_are_a_cvv_not_an_expiry_when_both_were_asked() -> None:
    assert spans("eight zero nine.", {CARD, EXPIRY, CVV}) == [(CVV, "eight zero nine.")]
    assert spans("836.", {EXPIRY, CVV}) == [(CVV, "836.")]
    assert spans("nine twenty six", {EXPIRY, CVV}) == [(EXPIRY, "nine twenty six")]


def test_a_number_read_over_several_turns_in_context() -> None:
    assert spans("five three six, two two...", {SSN}) == [(SSN, "five three six, two two...")]
    assert spans("four seven one nine.", {SSN}) == [(SSN, "four seven one nine.")]
    assert spans("GB29 NWBK 6016...", {IBAN}) == [(IBAN, "GB29 NWBK 6016...")]
    assert spans("GB29 NWBK 6016...") == []
    assert spans("1331 9268 19.", {IBAN}) == [(IBAN, "1331 9268 19.")]


# ------------------------------------------------------------------ custom patterns

def test_a_custom_pattern_covers_every_token_it_touches() -> None:
    member = CustomPattern("member_id", re.compile(r"MBR-?\d{3}"))
    tokens = "my member id is mbr-12345 ok".split()
    assert detect(tokens, custom=[member]) == [Found("member_id", 4, 5, "pattern")]
    across = CustomPattern("policy", re.compile(r"policy \w+ \d"))
    assert spans("the policy AB 7 is here", custom=[across]) == [("policy", "policy AB 7")]


def test_a_custom_match_inside_a_token_covers_the_token() -> None:
    p = CustomPattern("code", re.compile(r"X\d"))
    assert spans("codes aaX1bb and X2", custom=[p]) == [("code", "aaX1bb"), ("code", "X2")]


def test_custom_patterns_keep_the_tokens_left_free_by_builtins() -> None:
    p = CustomPattern("acct", re.compile(r"card is \d+ \d+"))
    found = spans("my card is 4111 1111 1111 1111 ok", custom=[p])
    assert found == [("acct", "card is"), (CARD, "4111 1111 1111 1111")]


def test_an_empty_match_finds_nothing() -> None:
    assert spans("anything", custom=[CustomPattern("empty", re.compile(r"x*"))]) == []


# ------------------------------------------------------------------ spans

@pytest.mark.parametrize("seed", range(100))
def test_found_spans_are_sorted_disjoint_and_inside(seed: int) -> None:
    rng = random.Random(seed)
    vocab = [*WORDS, "card", "cvv", "at", "dot", "com", "john", "born", "march", "4111",
             "1111", "12/27", "social", "phone", "order", "gb82", "west", "double", "-",
             "expires", "account", "routing", "021000021", "(555)", "123-4567", "plus"]
    tokens = [rng.choice(vocab) for _ in range(rng.randint(0, 40))]
    found = detect(tokens, context=rng.choice([(), {CARD}, {SSN, DOB}]),
                   custom=[CustomPattern("c", re.compile(r"john \w+"))])
    for a, b in zip(found, found[1:], strict=False):
        assert a.end <= b.start
    assert all(0 <= f.start < f.end <= len(tokens) for f in found)


# ------------------------------------------------------------------ properties (seeded)

def luhn_complete(body: str) -> str:
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError(body)


def random_visa(rng: random.Random) -> str:
    return luhn_complete("4" + "".join(rng.choice("0123456789") for _ in range(14)))


FILLERS = [["my", "card", "number", "is"], ["it's"], ["sure,", "it", "is"], []]


@pytest.mark.parametrize("seed", range(150))
def test_any_visa_in_comma_groups_is_found_exactly(seed: int) -> None:
    rng = random.Random(seed)
    number = random_visa(rng)
    groups = [number[i:i + 4] for i in range(0, 16, 4)]
    sep = rng.choice([",", "", "-", "."])
    head = rng.choice(FILLERS)
    tokens = [*head, *(g + sep for g in groups), "thanks"]
    assert detect(tokens) == [Found(CARD, len(head), len(head) + 4, "luhn", number[-4:])]


@pytest.mark.parametrize("seed", range(150))
def test_any_visa_spoken_digit_by_digit_is_found_exactly(seed: int) -> None:
    rng = random.Random(seed)
    number = random_visa(rng)
    spoken = [WORDS[int(d)] if d != "0" or rng.random() < 0.5 else "oh" for d in number]
    head = rng.choice(FILLERS)
    tokens = [*head, *spoken, "is", "that", "right"]
    assert detect(tokens) == [Found(CARD, len(head), len(head) + 16, "luhn", number[-4:])]


@pytest.mark.parametrize("seed", range(100))
def test_any_card_group_read_in_card_context_is_a_card(seed: int) -> None:
    rng = random.Random(seed)
    group = "".join(rng.choice("0123456789") for _ in range(4))
    form = rng.choice([group, " ".join(WORDS[int(d)] for d in group)])
    tokens = ["uh", *form.split()]
    (found,) = detect(tokens, context={CARD})
    assert (found.start, found.end) == (1, len(tokens))
    assert found.entity in (CARD, EXPIRY)


@pytest.mark.parametrize("seed", range(100))
def test_any_valid_ssn_written_3_2_4_is_found(seed: int) -> None:
    rng = random.Random(seed)
    area = rng.choice([a for a in range(1, 900) if a != 666])
    ssn = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    text = rng.choice([ssn, ssn.replace("-", " ")])
    assert spans(f"yes it's {text}") == [(SSN, text)]


@pytest.mark.parametrize("seed", range(100))
def test_any_valid_routing_number_is_found_in_routing_context(seed: int) -> None:
    rng = random.Random(seed)
    while True:
        number = "".join(rng.choice("0123456789") for _ in range(9))
        if aba_ok(number):
            break
    assert spans(f"the routing number is {number}") == [(ROUTING, number)]
    assert spans(number, {ROUTING}) == [(ROUTING, number)]


@pytest.mark.parametrize("seed", range(100))
def test_any_gb_iban_written_or_spelled_is_found(seed: int) -> None:
    rng = random.Random(seed)
    bank = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
    value = iban("GB", bank + "".join(rng.choice("0123456789") for _ in range(14)))
    assert iban_ok(value)
    if rng.random() < 0.5:
        tokens = [value[i:i + 4] for i in range(0, len(value), 4)]
    else:
        tokens = [c.lower() if c.isalpha() else WORDS[int(c)] for c in value]
    assert detect(["iban", *tokens, "please"]) == [Found(IBAN, 1, 1 + len(tokens), "checksum")]


# ------------------------------------------------------------------ checksums

def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert aba_ok("021000021") and not aba_ok("021000022") and not aba_ok("12345")
    assert card_brand("4111111111111111") == "visa"
    assert card_brand("378282246310005") == "amex"
    assert card_brand("3782822463100051") is None        # amex is 15 long
    assert card_brand("1234567890123456") is None


# ------------------------------------------------------------------ asked_for

@pytest.mark.parametrize(("text", "expected"), [
    ("can I have your card number please", {CARD}),
    ("and the long number on the front", {CARD}),
    ("what's the security code", {CVV}),
    ("the CVV?", {CVV}),
    ("and the three digits on the back", {CVV}),
    ("what's the expiry date", {EXPIRY}),
    ("and the expiration?", {EXPIRY}),
    ("can you confirm your date of birth", {DOB}),
    ("when were you born", {DOB}),
    ("your social security number please", {SSN}),
    ("the last four of your social", {SSN}),
    ("what's the account number", {BANK_ACCOUNT}),
    ("and the routing number", {ROUTING}),
    ("your sort code", {BANK_ACCOUNT}),
    ("could you read me the IBAN", {IBAN}),
    ("what's the best phone number to reach you", {PHONE}),
    ("and your email address", {EMAIL}),
    ("card number and expiry please", {CARD, EXPIRY}),
    ("and when does the card expire?", {EXPIRY}),
    ("what's the expiration date on the card?", {EXPIRY}),
    ("i'll just need the security code on the back of the card", {CVV}),
    ("and the four digit code on the front?", {CVV}),
    ("could you read me the number on the card?", {CARD}),
    ("which card will you be using today?", {CARD}),
    ("great. the valid-thru date?", {EXPIRY}),
    ("what's the mobile number on the account?", {PHONE}),
    ("and the code?", set()),
    ("for the direct debit what's the routing number?", {ROUTING}),
    ("how can I help you today", set()),
    ("what's your order number", set()),
])
def test_asked_for(text: str, expected: set[str]) -> None:
    assert asked_for(text.split()) == frozenset(expected)


@pytest.mark.parametrize(("text", "cues"), [
    ("my social security number is", {SSN}),
    ("and my phone number is", {PHONE}),
    ("my card number is", {CARD}),
    ("my email is", {EMAIL}),
    ("i lost my card", set()),                          # a card word is not an announcement
    ("my order number is", set()),                      # a PII-free number
    ("my social security number is 536 22 8714", set()),   # it came with its digits
    ("my social security number is not something i share", set()),   # not at the end
])
def test_trailing_cues(text: str, cues: set[str]) -> None:
    assert trailing_cues(text.split()) == cues

