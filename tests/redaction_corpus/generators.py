"""The generated part of the redaction corpus: one generator per entity (values in every
surface form, with and without the agent's question as context) and the PII-free items
full of numbers. Each generator yields ``(id, kind, turns, tags)``; a turn is
``(channel, segments)`` where a segment is text or a :class:`~forms.Pii`."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

from tests.redaction_corpus import forms as f
from tests.redaction_corpus.forms import Pii, Seg

Turn = tuple[str, list[Seg]]
Generated = tuple[str, str, list[Turn], list[str]]
Generator = Callable[[random.Random], Iterator[Generated]]


def agent(*segs: Seg) -> Turn:
    return ("agent", list(segs))


def customer(*segs: Seg) -> Turn:
    return ("customer", list(segs))


def pick(rng: random.Random, options: Sequence[str]) -> str:
    return rng.choice(options)


# --------------------------------------------------------------------------- cards
CARD_ASKS = (
    "Can I take the long number on the front of the card, please?",
    "What's the card number?",
    "Okay, and the card number please.",
    "Could you read me the number on the card?",
    "Great, go ahead with the card number when you're ready.",
    "I'll just need the card number to process that payment.",
    "Can you give me the number on your credit card?",
    "Please read out the debit card number for me.",
    "What's the number on the card you'd like to pay with?",
    "And the card number?",
)
LEADS = ("", "Sure, it's ", "Yeah, it's ", "Okay, it's ", "It's ", "Um, ", "Sure. ",
         "Yes, so it's ", "Okay so that's ", "Let me find it. Okay, it's ", "The number is ",
         "Right, it's ")
TAILS = (".", "", ".", " thanks.", ". Did you get that?", " yeah.", "?")
CARD_FORMS = ("spaced", "hyphens", "plain", "whisper_commas", "whisper_commas_spaced",
              "digits_spaced", "words", "words_flat", "repeats", "pairs", "mixed", "periods",
              "commas")
BRANDS = ("visa", "mastercard", "amex", "discover")


def _pan(rng: random.Random, brand: str) -> str:
    if brand in f.TEST_PANS and rng.random() < 0.35:
        return rng.choice(f.TEST_PANS[brand])
    return f.card(rng, brand)


def _card_pii(rng: random.Random, pan: str, form: str, label_form: str | None = None) -> Pii:
    surface = f.digit_surface(f.card_groups(pan), form, rng)
    return Pii("card", pan, surface, label_form or form)


def _answer(rng: random.Random, pii: Pii) -> Turn:
    lead, tail = pick(rng, LEADS), pick(rng, TAILS)
    if pii.entity in ("email", "dob", "iban") and lead == "The number is ":
        lead = "It's "
    if not lead and pii.surface[:1].isalpha():
        pii = Pii(pii.entity, pii.value, f.capitalise(pii.surface), pii.form)
    return customer(lead, pii, tail)


def cards_single(rng: random.Random) -> Iterator[Generated]:
    n = 0
    for brand in BRANDS:
        for form in CARD_FORMS:
            n += 1
            pii = _card_pii(rng, _pan(rng, brand), form)
            yield (f"card-{n:03d}", "pii", [agent(pick(rng, CARD_ASKS)), _answer(rng, pii)],
                   ["card", brand, form, "agent_context"])
    for form in ("spaced", "words_flat", "whisper_commas_spaced"):
        n += 1
        pii = _card_pii(rng, f.card(rng, "visa13"), form)
        yield (f"card-{n:03d}", "pii", [agent(pick(rng, CARD_ASKS)), _answer(rng, pii)],
               ["card", "visa13", form, "agent_context"])


CARD_SELF = (
    ("How would you like to pay today?", "I'll pay by card, the number is ", "."),
    ("Is there anything else?", "Yes, can you update my card? The new one is ", "."),
    ("How can I help?", "I want to pay the bill with my Visa, it's ", "."),
    ("Okay, what would you like to do?", "Put it on my credit card please, ", "."),
    ("Sure, what's the payment method?", "Mastercard, number ", ", thanks."),
    ("Anything else I can help with?", "Yeah, my card number is ", " and it keeps failing."),
)
CARD_NO_CONTEXT = (
    ("Which charge are you calling about?", "There's a charge on ", " that I don't recognise."),
    ("Okay, go ahead.", "So I see ", " on my statement twice."),
    ("What does the letter say?", "It just says ", " at the top and then the amount."),
    ("Sorry, say that again?", "", "."),
)


def cards_context_variants(rng: random.Random) -> Iterator[Generated]:
    for n, (ask, lead, tail) in enumerate(CARD_SELF, 1):
        brand, form = pick(rng, BRANDS), pick(rng, CARD_FORMS)
        pii = _card_pii(rng, _pan(rng, brand), form)
        yield (f"card-self-{n:02d}", "pii", [agent(ask), customer(lead, pii, tail)],
               ["card", brand, form, "customer_context"])
    for n, (ask, lead, tail) in enumerate(CARD_NO_CONTEXT, 1):
        form = ("spaced", "whisper_commas_spaced", "hyphens", "words")[n - 1]
        pii = _card_pii(rng, _pan(rng, pick(rng, BRANDS)), form)
        yield (f"card-nocontext-{n:02d}", "pii", [agent(ask), customer(lead, pii, tail)],
               ["card", form, "no_context"])


BACKCHANNEL = ("Mm-hm.", "Okay.", "Yep.", "Go on.", "Got it.", "Uh-huh.", "Yes.")
GROUP_STYLES = ("num", "num", "words", "pairs", "repeats", "whisper")


def _group_surface(rng: random.Random, group: str, style: str) -> str:
    if style == "num":
        return group
    if style == "words":
        return f.capitalise(f.words_digits(group, pick(rng, ("oh", "zero"))))
    if style == "pairs":
        return f.capitalise(f.pairs_group(group))
    if style == "repeats":
        return f.capitalise(f.words_repeats(group, rng))
    return f.whisper_commas(group, spaced=False)


def _group_turns(rng: random.Random, groups: Sequence[str], backchannel: bool
                 ) -> list[Turn]:
    turns: list[Turn] = []
    for k, group in enumerate(groups):
        style = pick(rng, GROUP_STYLES)
        tail = pick(rng, (".", "", ",", "...")) if k < len(groups) - 1 else pick(
            rng, (".", ". That's it.", "."))
        turns.append(customer(Pii("card", group, _group_surface(rng, group, style),
                                  f"group_{style}"), tail))
        if backchannel and k < len(groups) - 1 and rng.random() < 0.6:
            turns.append(agent(pick(rng, BACKCHANNEL)))
    return turns


def cards_in_groups(rng: random.Random) -> Iterator[Generated]:
    for n in range(1, 17):
        brand = BRANDS[n % 4]
        pan = _pan(rng, brand)
        groups = f.card_groups(pan) if n <= 12 else [pan[:8], pan[8:]]
        turns = [agent(pick(rng, CARD_ASKS))] + _group_turns(rng, groups, n % 3 != 0)
        yield (f"card-groups-{n:02d}", "pii", turns,
               ["card", brand, "multi_turn", "agent_context"])


def cards_garbled(rng: random.Random) -> Iterator[Generated]:
    forms = ("spaced", "words_flat", "whisper_commas_spaced", "plain", "mixed", "words",
             "hyphens", "pairs", "digits_spaced", "whisper_commas")
    for n, form in enumerate(forms, 1):
        value = f.garble(rng, _pan(rng, pick(rng, BRANDS)))
        groups = f.split_groups(value, (4,) * (len(value) // 4))
        pii = Pii("card", value, f.digit_surface(groups, form, rng), f"garbled_{form}")
        yield (f"card-garbled-{n:02d}", "pii", [agent(pick(rng, CARD_ASKS)), _answer(rng, pii)],
               ["card", "garbled", "agent_context", form])


# --------------------------------------------------------------------------- expiry, cvv
EXPIRY_ASKS = ("And the expiry date?", "What's the expiration date on the card?",
               "And when does the card expire?", "Can I have the expiry, month and year?",
               "Great. The valid-thru date?")
CVV_ASKS = ("And the three digit security code on the back?", "What's the CVV?",
            "And the last three digits on the signature strip?",
            "Could you read me the security code, please?", "And the CVC number?")
EXPIRY_FORMS = ("slash", "spaced", "pairs", "short_month", "month_year", "month_words",
                "slash_words", "slash_long", "twenty_twenty")


def expiry_pii(rng: random.Random, form: str) -> Pii:
    m, y = rng.randint(1, 12), rng.randint(25, 32)
    mm, yy = f"{m:02d}", f"{y:02d}"
    surfaces = {
        "slash": f"{mm}/{yy}", "spaced": f"{mm} {yy}",
        "pairs": f"{f.say_pair(mm)} {f.say_below_100(y)}",
        "short_month": f"{f.say_below_100(m)} {f.say_below_100(y)}",
        "month_year": f"{f.MONTHS[m - 1]} 20{yy}",
        "month_words": f"{f.MONTHS[m - 1]} {f.say_below_100(y)}",
        "slash_words": f"{f.words_digits(mm, 'zero')} slash {f.words_digits(yy)}",
        "slash_long": f"{mm}/20{yy}",
        "twenty_twenty": f"{f.MONTHS[m - 1]} twenty {f.say_below_100(y)}",
    }
    return Pii("expiry", f"{mm}/{yy}", surfaces[form], form)


CVV_FORMS = ("numerals", "words", "pair", "spaced", "oh")


def cvv_pii(rng: random.Random, form: str, length: int = 3) -> Pii:
    value = f.digits(rng, length)
    if form == "oh":
        value = value[0] + "0" + value[2:]
    surfaces = {"numerals": value, "words": f.words_digits(value, "zero"),
                "pair": f.say_digit(value[0]) + " " + f.pairs_group(value[1:]),
                "spaced": " ".join(value), "oh": f.words_digits(value)}
    return Pii("cvv", value, surfaces[form], form)


def card_expiry_cvv(rng: random.Random) -> Iterator[Generated]:
    for n in range(1, 17):
        brand = BRANDS[n % 4]
        pan = _pan(rng, brand)
        card = _card_pii(rng, pan, pick(rng, CARD_FORMS))
        expiry = expiry_pii(rng, pick(rng, EXPIRY_FORMS))
        cvv = cvv_pii(rng, pick(rng, CVV_FORMS), 4 if brand == "amex" else 3)
        turns = [agent(pick(rng, CARD_ASKS)), _answer(rng, card),
                 agent(pick(rng, EXPIRY_ASKS)), customer(pick(rng, ("", "It's ", "Um, ")),
                                                         expiry, "."),
                 agent("And the four digit code on the front?" if brand == "amex"
                       else pick(rng, CVV_ASKS)),
                 customer(pick(rng, ("", "It's ", "That's ")), cvv, ".")]
        if n % 4 == 0:      # expiry and code in one breath
            turns[3:] = [customer(expiry, pick(rng, (", and the code is ", " and ")), cvv, ".")]
        yield (f"card-full-{n:02d}", "pii", turns, ["card", "expiry", "cvv", brand])


def expiry_cvv_alone(rng: random.Random) -> Iterator[Generated]:
    for n, form in enumerate(EXPIRY_FORMS, 1):
        pii = expiry_pii(rng, form)
        ask = pick(rng, ("I just need the new expiry date on the card.",
                         "The card on file has expired; what's the new expiry date?",
                         "And the expiration date?"))
        yield (f"expiry-{n:02d}", "pii", [agent(ask), customer(pick(rng, ("", "It's ",
                                                                          "Sure, ")), pii, ".")],
               ["expiry", form, "agent_context"])
    for n, form in enumerate(CVV_FORMS * 2, 1):
        pii = cvv_pii(rng, form)
        yield (f"cvv-{n:02d}", "pii",
               [agent("The card ending in the number you gave, I'll just need the "
                      "security code on the back."),
                customer(pick(rng, ("", "It's ", "Okay, ")), pii, ".")],
               ["cvv", form, "agent_context"])


# --------------------------------------------------------------------------- ssn
SSN_ASKS = ("Can I get your social security number to verify your identity?",
            "What's your social?", "And your Social Security number, please?",
            "For verification I'll need your SSN.")
SSN_FORMS = ("hyphens", "spaced", "plain", "words", "words_flat", "repeats", "pairs",
             "mixed", "whisper_commas", "digits_spaced", "hyphens", "spaced")


def ssn_items(rng: random.Random) -> Iterator[Generated]:
    for n, form in enumerate(SSN_FORMS, 1):
        value = f.ssn(rng)
        pii = Pii("ssn", value, f.digit_surface(f.split_groups(value, (3, 2, 4)), form, rng),
                  form)
        yield (f"ssn-{n:02d}", "pii", [agent(pick(rng, SSN_ASKS)), _answer(rng, pii)],
               ["ssn", form, "agent_context"])
    selves = (("What can I do for you?", "I need to update my records, my social is ", "."),
              ("Okay.", "My SSN is ", " if you need it."),
              ("How can I help?", "Someone opened an account with my social security number, ",
               ", can you check?"),
              ("Go ahead.", "The social on the account should be ", "."))
    for n, (ask, lead, tail) in enumerate(selves, 1):
        form = ("hyphens", "words", "spaced", "pairs")[n - 1]
        value = f.ssn(rng)
        pii = Pii("ssn", value, f.digit_surface(f.split_groups(value, (3, 2, 4)), form, rng),
                  form)
        yield (f"ssn-self-{n:02d}", "pii", [agent(ask), customer(lead, pii, tail)],
               ["ssn", form, "customer_context"])
    for n, form in enumerate(("plain", "words", "pairs", "digits_spaced", "repeats"), 1):
        value = f.ssn(rng)[-4:]
        pii = Pii("ssn", value, f.digit_surface([value], form, rng), f"last4_{form}")
        yield (f"ssn-last4-{n:02d}", "pii",
               [agent(pick(rng, ("Can I get the last four of your social?",
                                 "Just the last four digits of your social security number.",
                                 "And the last 4 of the SSN?"))), _answer(rng, pii)],
               ["ssn", "last4", "agent_context"])
    for n in range(1, 3):
        value = f.ssn(rng)
        pii = Pii("ssn", value, "-".join(f.split_groups(value, (3, 2, 4))), "hyphens")
        yield (f"ssn-nocontext-{n:02d}", "pii",
               [agent("What's on the form?"), customer("The form has ", pii, " in the box.")],
               ["ssn", "no_context"])


# --------------------------------------------------------------------------- bank
ROUTING_ASKS = ("What's the routing number on your checks?", "And the ABA routing number?",
                "Can I have the bank's routing number?", "What's the nine digit routing number?")
ACCOUNT_ASKS = ("And the account number?", "What's the checking account number?",
                "And your bank account number, please?",
                "Now the account number at the bottom of the check.")
BANK_FORMS = ("plain", "spaced", "words_flat", "repeats", "digits_spaced", "mixed", "pairs",
              "hyphens")


def _routing_pii(rng: random.Random, form: str) -> Pii:
    value = f.routing(rng)
    return Pii("routing", value, f.digit_surface(f.split_groups(value, (3, 3, 3)), form, rng),
               form)


def _account_pii(rng: random.Random, form: str) -> Pii:
    value = f.digits(rng, rng.randint(8, 12))
    if value[0] == "0" and form == "pairs":
        value = "4" + value[1:]
    groups = f.split_groups(value, (4,) * (len(value) // 4))
    return Pii("bank_account", value, f.digit_surface(groups, form, rng), form)


def _share_four(a: str, b: str) -> bool:
    return any(a[k:k + 4] in b for k in range(len(a) - 3))


def bank_items(rng: random.Random) -> Iterator[Generated]:
    for n, form in enumerate(BANK_FORMS[:6], 1):
        yield (f"routing-{n:02d}", "pii",
               [agent(pick(rng, ROUTING_ASKS)), _answer(rng, _routing_pii(rng, form))],
               ["routing", form, "agent_context"])
    for n, form in enumerate(BANK_FORMS[:6], 1):
        yield (f"account-{n:02d}", "pii",
               [agent(pick(rng, ACCOUNT_ASKS)), _answer(rng, _account_pii(rng, form))],
               ["bank_account", form, "agent_context"])
    for n in range(1, 7):
        routing, account = (_routing_pii(rng, pick(rng, BANK_FORMS)),
                            _account_pii(rng, pick(rng, BANK_FORMS)))
        yield (f"bank-{n:02d}", "pii",
               [agent("For the direct debit I'll need your bank details. "
                      + pick(rng, ROUTING_ASKS)), _answer(rng, routing),
                agent(pick(rng, ACCOUNT_ASKS)), _answer(rng, account)],
               ["routing", "bank_account", "agent_context"])
    for n in range(1, 4):
        routing, account = _routing_pii(rng, "plain"), _account_pii(rng, pick(rng, BANK_FORMS))
        while _share_four(routing.value, account.value):     # one number's digits in the other
            account = _account_pii(rng, pick(rng, BANK_FORMS))
        yield (f"bank-oneturn-{n:02d}", "pii",
               [agent("Where should we send the refund?"),
                customer("To my checking account, routing number ", routing,
                         ", account number ", account, ".")],
               ["routing", "bank_account", "customer_context"])


# --------------------------------------------------------------------------- iban
IBAN_ASKS = ("What's the IBAN for the account you'd like the refund sent to?",
             "Can you read me your IBAN?", "And the international bank account number?",
             "I'll need the IBAN for the transfer.")
IBAN_FORMS = ("print", "compact", "whisper", "spelled", "mixed", "print_words")


def iban_surface(value: str, form: str, rng: random.Random) -> str:
    groups = [value[k:k + 4] for k in range(0, len(value), 4)]
    if form == "print":
        return " ".join(groups)
    if form == "compact":
        return value
    if form == "whisper":
        return " ".join(g.capitalize() if g.isalpha() else g for g in groups)
    if form == "spelled":
        return ", ".join(f.spelled(g, rng) for g in groups)
    if form == "mixed":
        return value[:2] + " " + f.spelled(value[2:4], rng) + ", " + " ".join(groups[1:])
    return " ".join(g if any(c.isalpha() for c in g) else f.words_digits(g) for g in groups)


def iban_items(rng: random.Random) -> Iterator[Generated]:
    countries = ("GB", "DE", "NL", "FR", "ES", "IE")
    n = 0
    for form in IBAN_FORMS:
        for country in (countries[n % 6], countries[(n + 3) % 6]):
            n += 1
            value = f.iban(rng, country)
            if n == 1:
                value = "GB82WEST12345698765432"
            pii = Pii("iban", value, iban_surface(value, form, rng), form)
            yield (f"iban-{n:02d}", "pii", [agent(pick(rng, IBAN_ASKS)), _answer(rng, pii)],
                   ["iban", country, form, "agent_context"])
    for k, form in enumerate(("print", "spelled"), 1):
        n += 1
        value = f.iban(rng, countries[k])
        pii = Pii("iban", value, iban_surface(value, form, rng), form)
        yield (f"iban-{n:02d}", "pii",
               [agent("How can I help?"),
                customer("I want to change my bank details, the new IBAN is ", pii, ".")],
               ["iban", form, "customer_context"])


# --------------------------------------------------------------------------- phone
PHONE_ASKS = ("What's the best number to reach you on?", "Can I get a callback number?",
              "And your phone number, please?", "What's the mobile number on the account?")
US_PHONE_FORMS = ("parens", "hyphens", "spaced", "plain", "plus_one", "one_hyphens", "words",
                  "repeats", "pairs", "mixed", "dots", "whisper_commas")


def us_phone_surface(value: str, form: str, rng: random.Random) -> tuple[str, str]:
    """(surface, canonical digits as said) of a 10-digit US number."""
    a, b, c = value[:3], value[3:6], value[6:]
    surfaces = {
        "parens": f"({a}) {b}-{c}", "hyphens": f"{a}-{b}-{c}", "spaced": f"{a} {b} {c}",
        "plain": value, "plus_one": f"+1 {a} {b} {c}", "one_hyphens": f"1-{a}-{b}-{c}",
        "dots": f"{a}.{b}.{c}", "whisper_commas": f"{a}, {b}, {c}",
    }
    if form in surfaces:
        return surfaces[form], ("1" + value if "one" in form else value)
    return f.digit_surface([a, b, c], form, rng), value


UK_PHONE_FORMS = ("international", "national", "spoken", "repeats", "plus_words", "digits_spaced")


def uk_phone_surface(value: str, form: str, rng: random.Random) -> tuple[str, str]:
    london = value.startswith("020")
    groups = [value[:3], value[3:7], value[7:]] if london else [value[:5], value[5:]]
    if form == "international":
        rest = value[1:]
        split = [rest[:2], rest[2:6], rest[6:]] if london else [rest[:4], rest[4:]]
        return "+44 " + " ".join(split), "44" + rest
    if form == "national":
        return " ".join(groups), value
    if form == "spoken":
        return ", ".join(f.words_digits(g) for g in groups), value
    if form == "repeats":
        return ", ".join(f.words_repeats(g, rng) for g in groups), value
    if form == "plus_words":
        rest = value[1:]
        return "plus four four " + f.words_repeats(rest, rng), "44" + rest
    return " ".join(value), value


def phone_items(rng: random.Random) -> Iterator[Generated]:
    for n, form in enumerate(US_PHONE_FORMS, 1):
        surface, value = us_phone_surface(f.us_phone(rng), form, rng)
        pii = Pii("phone", value, surface, form)
        yield (f"phone-us-{n:02d}", "pii", [agent(pick(rng, PHONE_ASKS)), _answer(rng, pii)],
               ["phone", "us", form, "agent_context"])
    for n, form in enumerate(UK_PHONE_FORMS * 2, 1):
        surface, value = uk_phone_surface(f.uk_phone(rng), form, rng)
        pii = Pii("phone", value, surface, form)
        yield (f"phone-uk-{n:02d}", "pii", [agent(pick(rng, PHONE_ASKS)), _answer(rng, pii)],
               ["phone", "uk", form, "agent_context"])
    selves = ("You can call me back on ", "My cell is ", "Text me at ", "The number here is ")
    for n, lead in enumerate(selves, 1):
        form = ("hyphens", "words", "parens", "spaced")[n - 1]
        surface, value = us_phone_surface(f.us_phone(rng), form, rng)
        yield (f"phone-self-{n:02d}", "pii",
               [agent("Is there anything else?"),
                customer(lead, Pii("phone", value, surface, form), pick(rng, (".", ", thanks.")))],
               ["phone", "us", form, "customer_context"])


# --------------------------------------------------------------------------- email
FIRST = ("john", "maria", "david", "sarah", "michael", "priya", "kevin", "laura", "ahmed",
         "jennifer", "tom", "olivia", "carlos", "emma", "daniel", "grace")
LAST = ("smith", "garcia", "johnson", "patel", "obrien", "nguyen", "miller", "khan",
        "williams", "brown", "lopez", "taylor", "martin", "clark")
DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.co.uk", "example.com",
           "icloud.com", "comcast.net", "acme-corp.com")
EMAIL_ASKS = ("What's the best email address for you?",
              "Can I get an email to send the confirmation to?",
              "And your email address, please?", "Which email should the receipt go to?")
EMAIL_FORMS = ("written", "spoken", "half", "spelled", "capitalised", "spoken_domain")


def email_value(rng: random.Random, n: int) -> str:
    first, last = pick(rng, FIRST), pick(rng, LAST)
    locals_ = (f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}{rng.randint(10, 99)}",
               f"{first}_{last}", f"{last}.{first[0]}", f"{first}{last[0]}{rng.randint(1, 9)}")
    return f"{locals_[n % len(locals_)]}@{pick(rng, DOMAINS)}"


def _say_email_part(part: str) -> str:
    out: list[str] = []
    for chunk in part.replace(".", " . ").replace("_", " _ ").replace("-", " - ").split():
        if chunk in ".-_":
            out.append({".": "dot", "_": "underscore", "-": "dash"}[chunk])
        elif chunk[-2:].isdigit() or chunk[-1:].isdigit():
            head = chunk.rstrip("0123456789")
            tail = chunk[len(head):]
            out += ([head] if head else []) + [f.say_below_100(int(tail)) if len(tail) == 2
                                               else f.say_digit(tail)]
        else:
            out.append(chunk)
    return " ".join(out)


def email_surface(value: str, form: str, rng: random.Random) -> str:
    local, domain = value.split("@")
    if form == "written":
        return value
    if form == "capitalised":
        return ".".join(p.capitalize() for p in local.split(".")) + "@" + domain.capitalize()
    if form == "spoken":
        return _say_email_part(local) + " at " + _say_email_part(domain)
    if form == "half":
        return local + " at " + domain
    if form == "spoken_domain":
        return local + "@" + _say_email_part(domain)
    letters = " ".join(ch if ch.isalpha() else _say_email_part(ch) for ch in local)
    return letters + " at " + _say_email_part(domain)


def email_items(rng: random.Random) -> Iterator[Generated]:
    for n in range(1, 25):
        form = EMAIL_FORMS[n % len(EMAIL_FORMS)]
        value = email_value(rng, n)
        if form == "spelled" and ("." in value.split("@")[0] or "_" in value):
            value = value.split("@")[0].replace(".", "").replace("_", "") + "@" + \
                value.split("@")[1]
        pii = Pii("email", value, email_surface(value, form, rng), form)
        context = n % 5 != 0
        turns = ([agent(pick(rng, EMAIL_ASKS)), _answer(rng, pii)] if context else
                 [agent("Anything else?"),
                  customer("Yes, can you update my email to ", pii, "?")])
        yield (f"email-{n:02d}", "pii", turns,
               ["email", form, "agent_context" if context else "customer_context"])


# --------------------------------------------------------------------------- dob
DOB_ASKS = ("Can you confirm your date of birth for me?", "And your date of birth?",
            "What's the date of birth on the account?", "For security, your date of birth?")
DOB_FORMS = ("us_written", "uk_written", "uk_spoken", "us_slash", "us_slash_short",
             "uk_slash", "month_words", "uk_pairs", "us_plain", "year_first", "us_pairs",
             "uk_numeral_words")


def dob_pii(rng: random.Random, form: str) -> Pii:
    y, m, d = rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)
    month, yy = f.MONTHS[m - 1], f"{y % 100:02d}"
    surfaces = {
        "us_written": f"{month} {f.numeral_ordinal(d)}, {y}",
        "uk_written": f"{f.numeral_ordinal(d)} of {month} {y}",
        "uk_spoken": f"the {f.say_ordinal(d)} of {month}, {f.say_year(y)}",
        "us_slash": f"{m:02d}/{d:02d}/{y}",
        "us_slash_short": f"{m}/{d}/{yy}",
        "uk_slash": f"{d:02d}/{m:02d}/{y}",
        "month_words": f"{month} {f.say_below_100(d)}, {f.say_below_100(y % 100)}"
        if y % 100 >= 10 else f"{month} {f.say_below_100(d)}, {f.say_year(y)}",
        "uk_pairs": f"{f.say_pair(f'{d:02d}')} {f.say_pair(f'{m:02d}')} {f.say_pair(yy)}",
        "us_plain": f"{month} {d}, {y}",
        "year_first": f"{f.say_year(y)}, {month} {f.say_ordinal(d)}",
        "us_pairs": f"{f.say_pair(f'{m:02d}')} {f.say_pair(f'{d:02d}')} {f.say_pair(yy)}",
        "uk_numeral_words": f"{d} {month} {f.say_year(y)}",
    }
    return Pii("dob", f"{y}-{m:02d}-{d:02d}", surfaces[form], form)


def dob_items(rng: random.Random) -> Iterator[Generated]:
    for n, form in enumerate(DOB_FORMS, 1):
        yield (f"dob-{n:02d}", "pii", [agent(pick(rng, DOB_ASKS)),
                                       _answer(rng, dob_pii(rng, form))],
               ["dob", form, "agent_context"])
    selves = ("I was born on ", "My date of birth is ", "My birthday is ", "DOB is ",
              "Date of birth, ")
    for n, lead in enumerate(selves, 1):
        form = pick(rng, DOB_FORMS)
        yield (f"dob-self-{n:02d}", "pii",
               [agent("I'll need to verify a couple of details."),
                customer(lead, dob_pii(rng, form), ".")],
               ["dob", form, "customer_context"])


# --------------------------------------------------------------------------- custom
NI_FIRST, NI_SECOND = "ABCEGHJKLMNPRSTWXYZ", "ABCEGHJKLMNPRSTWXYZ"


def custom_items(rng: random.Random) -> Iterator[Generated]:
    for n in range(1, 6):
        prefix = pick(rng, NI_FIRST) + pick(rng, NI_SECOND)
        body, suffix = f.digits(rng, 6), pick(rng, "ABCD")
        value = prefix + body + suffix
        surface = (value if n % 2 else
                   f"{prefix} {body[:2]} {body[2:4]} {body[4:]} {suffix}")
        yield (f"custom-ni-{n:02d}", "pii",
               [agent("And your National Insurance number?"),
                customer(pick(rng, ("It's ", "Sure, ", "")), Pii("ni_number", value, surface,
                                                                 "compact" if n % 2
                                                                 else "spaced"), ".")],
               ["custom", "ni_number"])
    for n in range(1, 6):
        body = f.digits(rng, 6)
        surface = ("POL-", "POL ", "POL")[n % 3] + body
        yield (f"custom-policy-{n:02d}", "pii",
               [agent(pick(rng, ("Do you have your policy number handy?",
                                 "What's the policy number?"))),
                customer(pick(rng, ("Yes, it's ", "It's ", "")),
                         Pii("policy_number", "POL" + body, surface, "written"), ".")],
               ["custom", "policy_number"])


GENERATORS: tuple[Generator, ...] = (
    cards_single, cards_context_variants, cards_in_groups, cards_garbled, card_expiry_cvv,
    expiry_cvv_alone, ssn_items, bank_items, iban_items, phone_items, email_items, dob_items,
    custom_items)
