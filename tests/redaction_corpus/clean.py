"""The generated PII-free items: call-centre utterances full of numbers that are not
personal data (order and ticket numbers, prices, times, plain dates, quantities, "twenty
four seven", ordinals, years, flights, rooms, zip codes, tracking and model numbers), some
of them right after the agent asked for a card number or a date of birth (the customer
says something else)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from tests.redaction_corpus import forms as f
from tests.redaction_corpus.generators import Generated, Turn, agent, customer, pick

Template = Callable[[random.Random], tuple[list[Turn], list[str]]]
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _n(rng: random.Random, lo: int, hi: int) -> str:
    return str(rng.randint(lo, hi))


def order_number(rng: random.Random) -> tuple[list[Turn], list[str]]:
    value = f.digits(rng, rng.randint(5, 8)).lstrip("0") or "7"
    style = rng.randrange(4)
    said = (value, f.words_digits(value), f.whisper_commas(value, spaced=False),
            f.pairs_group(value))[style]
    return ([agent(pick(rng, ("Can I have your order number?", "What's the order number?",
                              "Do you have the order reference?"))),
             customer(pick(rng, ("Sure, it's ", "It's ", "Yeah, order ", "")), said, ".")],
            ["order_number"])


def ticket_number(rng: random.Random) -> tuple[list[Turn], list[str]]:
    kind = pick(rng, ("ticket", "case", "reference", "confirmation", "claim"))
    value = pick(rng, (f.digits(rng, 6), "A" + f.digits(rng, 5), "CR-" + f.digits(rng, 5),
                       f"{rng.randint(2019, 2024)}-{f.digits(rng, 5)}"))
    return ([customer(f"I have a {kind} number from last time, it's {value}.")],
            ["reference"])


def price(rng: random.Random) -> tuple[list[Turn], list[str]]:
    dollars, cents = rng.randint(5, 2500), rng.randint(0, 99)
    said = pick(rng, (f"${dollars:,}.{cents:02d}", f"{f.say_below_100(dollars % 100 or 49)} "
                      f"{f.say_below_100(cents or 99)}", f"${dollars:,}",
                      f"£{dollars}.{cents:02d}", f"{dollars} dollars and {cents} cents"))
    lead = pick(rng, ("It was ", "They charged me ", "The bill came to ", "I paid ",
                      "The upgrade is "))
    return ([customer(lead, said, pick(rng, (".", " last month.", " which is too much.")))],
            ["price"])


def time_of_day(rng: random.Random) -> tuple[list[Turn], list[str]]:
    h, m = rng.randint(1, 12), pick(rng, ("00", "15", "30", "45", "10"))
    said = pick(rng, (f"{h}:{m}", f"{h}:{m} {pick(rng, ('am', 'pm', 'AM', 'p.m.'))}",
                      f"{f.say_below_100(h)} {'thirty' if m == '30' else 'fifteen'}",
                      f"half past {f.say_below_100(h)}", f"between {h} and {h % 12 + 3}"))
    return ([agent("When would suit you for the technician?"),
             customer(pick(rng, ("Any time around ", "Maybe ", "After ")), said,
                      pick(rng, (" on Tuesday.", ".", " if that works.")))], ["time"])


def plain_date(rng: random.Random) -> tuple[list[Turn], list[str]]:
    m, d = rng.randint(1, 12), rng.randint(1, 28)
    month = f.MONTHS[m - 1]
    said = pick(rng, (f"{month} {f.numeral_ordinal(d)}", f"the {f.say_ordinal(d)} of {month}",
                      f"{m}/{d}", f"{pick(rng, WEEKDAYS)} the {f.numeral_ordinal(d)}",
                      f"{month} {d}, {rng.randint(2018, 2025)}",
                      f"the {f.numeral_ordinal(d)}"))
    lead = pick(rng, ("The delivery was due on ", "I called on ", "My contract renews on ",
                      "The payment went out on ", "The engineer came on "))
    return ([customer(lead, said, ".")], ["date"])


def quantity(rng: random.Random) -> tuple[list[Turn], list[str]]:
    n = rng.randint(2, 5000)
    said = pick(rng, (str(n), f"{n:,}", f.say_below_100(n % 100 or 12),
                      f"{f.DIGIT_WORDS[n % 9 + 1]} hundred"))
    thing = pick(rng, ("boxes", "units", "licences", "bottles", "pieces", "seats"))
    return ([customer(pick(rng, ("I ordered ", "We need ", "There should be ")),
                      f"{said} {thing}", pick(rng, (".", " but only half came.")))],
            ["quantity"])


def twenty_four_seven(rng: random.Random) -> tuple[list[Turn], list[str]]:
    text = pick(rng, ("You said support was twenty four seven.",
                      "Isn't the line open 24/7?", "The ad says 24/7 support, 365 days a year.",
                      "It's supposed to work twenty four seven, not just on weekdays.",
                      "We run the shop twenty four seven so we need the fix today."))
    return ([customer(text)], ["twenty_four_seven"])


def ordinal(rng: random.Random) -> tuple[list[Turn], list[str]]:
    text = pick(rng, (f"This is the {pick(rng, ('third', 'fourth', 'fifth', '3rd', '4th'))} "
                      "time I've called about this.",
                      f"I live on the {pick(rng, ('21st', '2nd', 'twelfth', '1st'))} floor.",
                      f"It's the {pick(rng, ('second', 'third', '2nd'))} router you've sent.",
                      "I'm the first in the queue, apparently, after 40 minutes."))
    return ([customer(text)], ["ordinal"])


def year(rng: random.Random) -> tuple[list[Turn], list[str]]:
    y = rng.randint(1995, 2024)
    text = pick(rng, (f"I've been a customer since {y}.",
                      f"It's a {y} Honda Civic.",
                      f"Back in {f.say_year(y)} it was much cheaper.",
                      f"The boiler was installed in {y} I think.",
                      f"We moved here in {f.say_year(y)}."))
    return ([customer(text)], ["year"])


def flight(rng: random.Random) -> tuple[list[Turn], list[str]]:
    code = pick(rng, ("BA", "UA", "DL", "AA", "LH"))
    number = _n(rng, 10, 2999)
    said = pick(rng, (f"{code} {number}", f"{code}{number}",
                      f"{code} {f.words_digits(number)}"))
    return ([agent("Which flight are you booked on?"),
             customer(f"Flight {said}, leaving at {rng.randint(6, 22)}:{pick(rng, ('05', '40'))}"
                      f" on the {f.numeral_ordinal(rng.randint(1, 28))}.")], ["flight"])


def room(rng: random.Random) -> tuple[list[Turn], list[str]]:
    text = pick(rng, (f"I'm in room {_n(rng, 101, 1899)}.",
                      f"It's apartment {rng.randint(1, 40)}{pick(rng, 'ABCD')}.",
                      f"Suite {_n(rng, 100, 900)}, on the {f.numeral_ordinal(rng.randint(2, 30))}"
                      " floor.",
                      f"Unit {_n(rng, 1, 99)}, building {_n(rng, 1, 9)}."))
    return ([customer(text)], ["room"])


def zip_code(rng: random.Random) -> tuple[list[Turn], list[str]]:
    z = f.digits(rng, 5)
    said = pick(rng, (z, f.words_digits(z), f"{z}-{f.digits(rng, 4)}"))
    return ([agent("And the zip code for the service address?"),
             customer(pick(rng, ("It's ", "Zip is ", "")), said, ".")], ["zip"])


def postcode(rng: random.Random) -> tuple[list[Turn], list[str]]:
    code = pick(rng, ("SW1A 1AA", "M1 1AE", "EC1A 1BB", "B33 8TH", "CR2 6XH", "DN55 1PT"))
    return ([customer(f"The postcode is {code}, the house is number {rng.randint(1, 250)}.")],
            ["postcode"])


def tracking(rng: random.Random) -> tuple[list[Turn], list[str]]:
    parcel = f.digits(rng, 16)
    if f.luhn_valid(parcel):
        parcel = parcel[:-1] + str((int(parcel[-1]) + 1) % 10)
    said = pick(rng, ("1Z 999 AA1 0123 4567 84", "1Z999AA10123456784",
                      f"TBA{f.digits(rng, 12)}", f"JD{parcel}GB"))
    return ([customer(f"The tracking number on the email is {said}.")], ["tracking"])


def model_number(rng: random.Random) -> tuple[list[Turn], list[str]]:
    text = pick(rng, ("The router is an RT-AX88U.", "I've got the iPhone 13 Pro, 256 gigs.",
                      f"It's the model {_n(rng, 1000, 9999)} printer.",
                      f"Serial number 5CG{f.digits(rng, 4)}XYZ on the back.",
                      f"The TV is a 55 inch, model QN{_n(rng, 50, 90)}Q80."))
    return ([customer(text)], ["model"])


def rates(rng: random.Random) -> tuple[list[Turn], list[str]]:
    text = pick(rng, (f"I'm paying for {pick(rng, ('500', '300', '1000'))} megabits and "
                      f"getting about {rng.randint(20, 90)}.",
                      f"You offered me {rng.randint(10, 40)} percent off for 12 months.",
                      f"The 5G signal drops to {rng.randint(1, 3)} bars upstairs.",
                      f"It's {rng.randint(15, 30)}% more than last year."))
    return ([customer(text)], ["rate"])


def duration(rng: random.Random) -> tuple[list[Turn], list[str]]:
    text = pick(rng, (f"I've been on hold for {rng.randint(20, 59)} minutes.",
                      f"It's been {f.say_below_100(rng.randint(2, 6))} weeks now.",
                      f"The outage lasted {rng.randint(2, 11)} hours yesterday.",
                      f"I've had the account for {rng.randint(2, 25)} years."))
    return ([customer(text)], ["duration"])


def ivr(rng: random.Random) -> tuple[list[Turn], list[str]]:
    text = pick(rng, (f"I pressed {rng.randint(1, 9)} like the menu said.",
                      f"The recording said option {rng.randint(1, 6)} for billing.",
                      f"Can you put me through to extension {_n(rng, 2000, 7999)}?",
                      f"I tried pressing {rng.randint(1, 9)} then {rng.randint(1, 9)} and "
                      "it hung up."))
    return ([customer(text)], ["ivr"])


def agent_statement(rng: random.Random) -> tuple[list[Turn], list[str]]:
    order, d = f.digits(rng, 7).lstrip("0"), rng.randint(1, 26)
    text = pick(rng, (f"Your order {order} shipped on the {f.numeral_ordinal(d)} and should "
                      f"arrive by the {f.numeral_ordinal(d + 2)}.",
                      f"Your balance is ${rng.randint(10, 4000):,}.{rng.randint(0, 99):02d}, "
                      f"due on {f.MONTHS[rng.randint(0, 11)]} {d}.",
                      f"I can offer you {rng.randint(3, 12)} months at $"
                      f"{rng.randint(20, 80)}.99 a month.",
                      f"That's ticket {f.digits(rng, 6)}; someone will call within "
                      f"{rng.randint(24, 72)} hours."))
    return ([agent(text), customer(pick(rng, ("Okay, thanks.", "Great.", "Fine.")))],
            ["agent_numbers"])


def invoice(rng: random.Random) -> tuple[list[Turn], list[str]]:
    said = pick(rng, (f"INV-{rng.randint(2019, 2025)}-{f.digits(rng, 6)}",
                      f"invoice {f.digits(rng, 7)}", f"bill number {f.digits(rng, 6)}"))
    return ([customer(f"It's about {said}, the amount is wrong.")], ["invoice"])


def address(rng: random.Random) -> tuple[list[Turn], list[str]]:
    street = pick(rng, ("Elm Street", "Maple Avenue", "High Street", "Oak Road"))
    return ([agent("What's the service address?"),
             customer(f"{rng.randint(1, 9999)} {street}, apartment {rng.randint(1, 30)}.")],
            ["address"])


def card_context_no_pii(rng: random.Random) -> tuple[list[Turn], list[str]]:
    text = pick(rng, ("Hang on, give me two minutes to find it.",
                      "I have two cards, which one should I use?",
                      "Sorry, can you hold for one second?",
                      "Can I call back in 10 minutes with it?",
                      "It's in my other bag, give me a sec, maybe 30 seconds.",
                      "I'd rather pay the $45 by bank transfer, is that okay?",
                      "The one I used on the 3rd was declined, so not that one."))
    return ([agent(pick(rng, ("Can I take the long number on the front of the card, please?",
                              "What's the card number?"))), customer(text)],
            ["card_context", "hard"])


def other_context_no_pii(rng: random.Random) -> tuple[list[Turn], list[str]]:
    ask, reply = rng.choice((
        ("Can you confirm your date of birth for me?", "Sure, one second, I'm driving."),
        ("And your date of birth?", "Do you really need that? I've been a customer 20 years."),
        ("What's your social?", "I'd rather not give that over the phone, sorry."),
        ("And the expiry date?", "Hold on, the card's in the car, two minutes."),
        ("What's the best number to reach you on?", "The one you have on file is fine."),
        ("And your email address, please?", "Same as last time, the one on the account."),
    ))
    return ([agent(ask), customer(reply)], ["other_context", "hard"])


def long_reference(rng: random.Random) -> tuple[list[Turn], list[str]]:
    while True:
        amazon = f"{f.digits(rng, 3)}-{f.digits(rng, 7)}-{f.digits(rng, 7)}"
        if not f.luhn_valid(amazon.replace("-", "")):
            break
    text = pick(rng, (f"My order number is {amazon}.",
                      f"The USPS tracking is 9400 1{f.digits(rng, 3)} {f.digits(rng, 4)} "
                      f"{f.digits(rng, 4)} {f.digits(rng, 4)} {f.digits(rng, 2)}.",
                      f"The meter reading is {f.digits(rng, 7)}.",
                      f"The order number is {f.digits(rng, 3)} {f.digits(rng, 3)} "
                      f"{f.digits(rng, 3)}."))
    return ([customer(text)], ["long_reference", "hard"])


TEMPLATES: tuple[tuple[Template, int], ...] = (
    (order_number, 8), (ticket_number, 4), (price, 7), (time_of_day, 5), (plain_date, 7),
    (quantity, 4), (twenty_four_seven, 3), (ordinal, 4), (year, 4), (flight, 3), (room, 3),
    (zip_code, 4), (postcode, 2), (tracking, 3), (model_number, 3), (rates, 3),
    (duration, 3), (ivr, 3), (agent_statement, 4), (invoice, 3), (address, 3),
    (card_context_no_pii, 5), (other_context_no_pii, 5), (long_reference, 4),
)


def clean_items(rng: random.Random) -> Iterator[Generated]:
    seen: set[str] = set()
    for template, count in TEMPLATES:
        for k in range(1, count + 1):
            for _attempt in range(50):       # no two items alike
                turns, tags = template(rng)
                key = repr(turns)
                if key not in seen:
                    break
            seen.add(key)
            yield (f"clean-{template.__name__.replace('_', '-')}-{k:02d}", "clean", turns,
                   tags)
