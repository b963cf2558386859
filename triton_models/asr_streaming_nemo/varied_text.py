"""Varied call-centre sentences for training the small model (issue 15), not templates.

`data_gen.py --text varied` (or `mixed`) draws its sentences here. A sentence is built
from one of many shapes (`SHAPES`: greetings, identity, addresses, bills and amounts,
dates and times, orders and products, faults, bookings, account changes, people acting
for others, spelling, questions, complaints, closing) whose slots are filled from word
lists (names, streets, towns, products, services, faults, relatives, weekdays, months,
currencies) and spoken number forms (cardinals, ordinals, digit strings, prices, house
numbers, times, percentages), with optional openers ("well", "okay so", "yes") and
closers ("please", "thank you"). Output is normalised like the bench's references:
lower-case words, numbers in words, no punctuation, so a sentence is its own transcript.

Pure and deterministic for a seed (stdlib only). The word lists were written for call
-centre speech in general; the bench's held-out sentences are excluded as whole texts by
data_gen.py (`--exclude-text`), and `vocabulary_overlap` reports how many of a test set's
words the generator can produce at all (README: the figure for bench's held-out set).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
          "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                  "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}

FIRST_NAMES = (
    "james john robert michael william david richard joseph thomas charles christopher "
    "daniel matthew anthony mark donald steven paul andrew joshua kenneth kevin brian george "
    "timothy ronald edward jason jeffrey ryan jacob gary nicholas eric jonathan stephen larry "
    "justin scott brandon benjamin samuel frank raymond alexander patrick jack dennis jerry "
    "tyler aaron henry adam douglas nathan peter zachary kyle walter harold carl arthur "
    "oliver harry noah leo oscar archie alfie freddie theo liam ethan lucas mason logan "
    "mohammed ahmed ali omar hassan yusuf ibrahim raj arjun vikram sanjay amit rahul "
    "wei chen jun hiroshi kenji takeshi diego carlos javier luis miguel jose pablo "
    "ivan dmitri piotr tomasz lukas jan emeka chidi kwame kofi tunde "
    "mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy "
    "betty sandra ashley kimberly emily donna michelle carol amanda dorothy melissa "
    "deborah stephanie rebecca sharon laura cynthia kathleen amy angela shirley anna brenda "
    "pamela emma nicole helen samantha katherine christine debra rachel catherine carolyn "
    "janet ruth maria heather diane virginia julie joyce victoria olivia kelly christina "
    "lauren joan evelyn judith megan andrea cheryl hannah jacqueline martha gloria teresa "
    "sophie grace lily ella amelia isla poppy freya ava mia ruby alice charlotte "
    "fatima aisha zainab anita sunita deepa meera neha mei ling yuki sakura "
    "sofia lucia elena carmen isabel ana paula agnieszka katarzyna olga natalia "
    "ngozi amara chioma abena ama"
).split()

SURNAMES = (
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez "
    "lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson "
    "white harris sanchez clark ramirez lewis robinson walker young allen king wright scott "
    "torres nguyen hill flores green adams nelson baker hall rivera campbell mitchell "
    "carter roberts turner phillips evans parker edwards collins stewart morris murphy cook "
    "rogers morgan peterson cooper reed bailey bell kelly howard ward cox richardson wood "
    "watson brooks bennett gray james hughes price sanders myers long ross foster "
    "patel shah singh kumar sharma gupta khan ahmed hussain begum chowdhury rahman "
    "wang zhang liu chen yang huang zhao wu zhou tanaka suzuki watanabe yamamoto sato "
    "nowak wisniewski wojcik novak horvat petrov ivanov popescu "
    "okonkwo adeyemi mensah owusu mbeki banda "
    "obrien murphy kennedy walsh byrne ryan doyle mcdonald macleod fraser campbell "
    "jenkins davies lloyd hughes griffiths owen morgan powell bishop fletcher "
    "schmidt mueller schneider fischer weber meyer wagner becker hoffman "
    "rossi russo ferrari esposito bianchi romano costa silva santos ferreira oliveira "
    "dubois moreau laurent lefebvre bernard"
).split()

STREET_NAMES = (
    "oak elm maple cedar pine birch ash beech chestnut cherry hawthorn holly ivy laurel "
    "church mill park market high main bridge castle hill north south east west "
    "victoria albert queen king prince princess windsor regent george grosvenor "
    "manor abbey chapel school orchard meadow spring river brook lake forest garden "
    "green grange priory rectory vicarage cromwell nelson wellington trafalgar "
    "washington lincoln jefferson madison franklin jackson adams monroe "
    "highland lowland valley sunset sunrise harbour ocean bay cliff quarry foundry"
).split()

STREET_TYPES = ("street", "road", "lane", "avenue", "drive", "close", "crescent", "way",
                "place", "court", "terrace", "gardens", "grove", "row", "square", "walk",
                "boulevard", "parkway", "mews", "hill")

TOWNS = (
    "london manchester birmingham liverpool sheffield newcastle nottingham "
    "leicester coventry bradford cardiff swansea edinburgh glasgow aberdeen dundee belfast "
    "derry oxford cambridge brighton southampton portsmouth plymouth exeter bath york "
    "norwich ipswich reading luton milton keynes swindon gloucester worcester hereford "
    "chester lancaster preston blackpool hull sunderland durham carlisle inverness "
    "dublin cork galway limerick boston chicago houston phoenix denver seattle portland "
    "atlanta miami dallas austin detroit baltimore philadelphia pittsburgh cleveland "
    "toronto vancouver montreal calgary ottawa sydney melbourne auckland "
    "paris barcelona lisbon rome milan berlin munich amsterdam brussels vienna "
    "prague warsaw dublin oslo stockholm copenhagen athens istanbul"
).split()

PRODUCTS = (
    "dishwasher|tumble dryer|oven|cooker|"
    "microwave|kettle|toaster|vacuum cleaner|iron|hair dryer|"
    "tablet|phone|mobile phone|smart watch|printer|router|modem|"
    "headphones|speaker|games console|camera|monitor|keyboard|mouse|"
    "armchair|bed|mattress|chest of drawers|desk|office chair|bookcase|"
    "dining table|bunk bed|cot|pram|car seat|bicycle|scooter|lawn mower|barbecue|"
    "radiator|thermostat|heat pump|solar panel|smoke alarm|doorbell|light fitting|"
    "curtains|blinds|carpet|rug|lamp|mirror|shower|bath|toilet|sink|tap|"
    "jacket|coat|dress|shirt|jumper|trousers|jeans|shoes|trainers|boots|handbag|suitcase|"
    "ring|necklace|watch|glasses|contact lenses|perfume|"
    "gift card|subscription|ticket|parcel|package|order|delivery"
).split("|")

SERVICES = (
    "internet|phone line|mobile contract|sim card|data plan|tv package|"
    "electricity|gas|water|energy tariff|meter|smart meter|"
    "home insurance|car insurance|travel insurance|pet insurance|life insurance|warranty|"
    "current account|savings account|credit card|debit card|loan|mortgage|overdraft|"
    "pension|standing order|account|policy|claim|booking|reservation|"
    "appointment|repair|installation|engineer visit|streaming service|"
    "newspaper subscription|parking permit|council tax|rent|deposit"
).split("|")

FAULTS = (
    "stopped working|will not turn on|keeps switching off|"
    "is leaking water|is broken|arrived damaged|arrived with parts missing|is the wrong size|"
    "is the wrong colour|does not charge|keeps dropping the connection|is very slow|"
    "shows an error message|is overheating|smells of burning|has a crack in it|"
    "is not what i ordered|never arrived|came late|is flashing red|has no signal|"
    "will not connect|is stuck|keeps freezing|has a dead pixel|is scratched|"
    "is missing the instructions|is too loud|does not heat up|does not cool down"
).split("|")

RELATIVES = ("husband", "wife", "partner", "son", "daughter", "mother", "father", "mum",
             "dad", "brother", "sister", "grandmother", "grandfather", "uncle", "aunt",
             "neighbour", "friend", "colleague", "landlord", "tenant", "carer", "flatmate")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
CURRENCIES = (("pound", "pounds", "pence"), ("dollar", "dollars", "cents"),
              ("euro", "euros", "cents"))
DEPARTMENTS = ("billing", "sales", "technical support", "customer service", "accounts",
               "complaints", "returns", "collections", "fraud", "retentions", "claims",
               "bookings", "the manager", "a supervisor", "someone senior")
COLOURS = ("black", "white", "grey", "silver", "red", "blue", "navy", "green", "yellow",
           "pink", "purple", "brown", "beige", "cream", "gold", "orange")
PERIODS = ("morning", "afternoon", "evening", "weekend", "week", "month", "year",
           "fortnight", "summer", "winter", "holidays")
PAYMENT_WAYS = ("by card", "by bank transfer", "in cash", "online",
                "over the phone", "with a voucher", "with my credit card", "through the app",
                "with paypal", "by cheque")
CHANNELS = ("email", "text message", "letter", "phone call", "the app", "the website",
            "live chat", "post")
LETTERS = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p",
           "q", "r", "s", "t", "u", "v", "w", "x", "y", "z")
OPENERS = ("", "", "", "", "", "well", "okay", "okay so", "yes", "yeah", "right", "so",
           "um", "hi", "hello", "sorry", "actually", "oh", "alright", "no", "erm", "look")
CLOSERS = ("", "", "", "", "", "", "please", "thank you", "thanks", "if that is okay",
           "if possible", "as soon as possible", "today", "right now", "for me",
           "if you can", "is that right", "i think")


def number_words(value: int) -> str:
    """English words for 0 <= value < 1,000,000 ("two hundred and five")."""
    if not 0 <= value < 1_000_000:
        raise ValueError(f"number out of range: {value}")
    if value < 10:
        return DIGIT_WORDS[value]
    if value < 20:
        return _TEENS[value - 10]
    if value < 100:
        tens, unit = divmod(value, 10)
        return _TENS[tens] + ("" if unit == 0 else " " + DIGIT_WORDS[unit])
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        head = DIGIT_WORDS[hundreds] + " hundred"
        return head if rest == 0 else f"{head} and {number_words(rest)}"
    thousands, rest = divmod(value, 1000)
    head = number_words(thousands) + " thousand"
    if rest == 0:
        return head
    return head + (" and " if rest < 100 else " ") + number_words(rest)


def ordinal_words(value: int) -> str:
    """Ordinal words for 1 <= value < 1000 ("twenty third")."""
    words = number_words(value).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


class VariedText:
    """Random normalised call-centre sentences; `sentence()` draws one."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    # -- slot fillers -------------------------------------------------------------------
    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return self.rng.choice(options)

    def name(self) -> str:
        roll = self.rng.random()
        if roll < 0.3:
            return self.pick(FIRST_NAMES)
        if roll < 0.45:
            return f"{self.pick(('mister', 'missus', 'miss', 'doctor', 'ms'))} {self.pick(SURNAMES)}"
        return f"{self.pick(FIRST_NAMES)} {self.pick(SURNAMES)}"

    def digits(self, low: int, high: int) -> str:
        count = self.rng.randint(low, high)
        spoken = [self.pick(DIGIT_WORDS) for _ in range(count)]
        if self.rng.random() < 0.15:
            spoken = ["oh" if d == "zero" else d for d in spoken]
        if count >= 2 and self.rng.random() < 0.1:
            at = self.rng.randrange(count - 1)
            spoken[at:at + 2] = ["double", spoken[at]]
        return " ".join(spoken)

    def cardinal(self) -> str:
        return number_words(self.rng.choice((self.rng.randint(0, 20), self.rng.randint(2, 99),
                                             self.rng.randint(100, 999),
                                             self.rng.randint(1000, 20000))))

    def money(self) -> str:
        one, many, small = self.rng.choice(CURRENCIES)
        value = self.rng.choice((self.rng.randint(1, 99), self.rng.randint(100, 999),
                                 self.rng.randint(1000, 9999), self.rng.choice((5, 10, 20, 50))))
        text = f"{number_words(value)} {one if value == 1 else many}"
        if self.rng.random() < 0.3:
            text += f" and {number_words(self.rng.randint(1, 99))} {small}"
        elif self.rng.random() < 0.1:
            text = f"{number_words(value)} {many} {number_words(self.rng.randint(10, 99))}"
        return text

    def date(self) -> str:
        day, month = ordinal_words(self.rng.randint(1, 31)), self.pick(MONTHS)
        return self.rng.choice((f"the {day} of {month}", f"{month} the {day}", f"{month} {day}",
                                f"{self.pick(WEEKDAYS)} the {day}", f"next {self.pick(WEEKDAYS)}",
                                f"last {self.pick(WEEKDAYS)}", self.pick(WEEKDAYS),
                                "tomorrow", "yesterday", "today", f"the end of {month}"))

    def time(self) -> str:
        hour = number_words(self.rng.randint(1, 12))
        return self.rng.choice((f"{hour} o'clock", f"half past {hour}",
                                f"quarter past {hour}", f"quarter to {hour}",
                                f"{hour} {number_words(self.rng.choice((15, 30, 45, 10, 20)))}",
                                f"{hour} in the {self.pick(('morning', 'afternoon', 'evening'))}",
                                "midday", "lunchtime", "first thing in the morning"))

    def address(self) -> str:
        house = number_words(self.rng.randint(1, 250))
        street = f"{self.pick(STREET_NAMES)} {self.pick(STREET_TYPES)}"
        text = self.rng.choice((f"{house} {street}", f"{house} {street} in {self.pick(TOWNS)}",
                                f"flat {number_words(self.rng.randint(1, 40))} {house} {street}",
                                f"{street} {self.pick(TOWNS)}"))
        return text

    def postcode(self) -> str:
        letters = " ".join(self.pick(LETTERS) for _ in range(2))
        return (f"{letters} {self.pick(DIGIT_WORDS)} {self.pick(DIGIT_WORDS)} "
                f"{' '.join(self.pick(LETTERS) for _ in range(2))}")

    def thing(self) -> str:
        item = self.pick(PRODUCTS)
        roll = self.rng.random()
        if roll < 0.2:
            return f"the {self.pick(COLOURS)} {item}"
        if roll < 0.35:
            return f"a new {item}" if item[0] not in "aeiou" else f"the new {item}"
        return f"the {item}" if roll < 0.8 else f"my {item}"

    def service(self) -> str:
        return f"{self.pick(('my', 'the', 'our'))} {self.pick(SERVICES)}"

    def person(self) -> str:
        return self.rng.choice((f"my {self.pick(RELATIVES)}", self.name(),
                                f"my {self.pick(RELATIVES)} {self.pick(FIRST_NAMES)}"))

    def spelled(self) -> str:
        word = self.pick(SURNAMES)
        return " ".join(word[: self.rng.randint(min(3, len(word)), min(8, len(word)))])

    def percent(self) -> str:
        return f"{number_words(self.rng.choice((5, 10, 15, 20, 25, 30, 40, 50)))} percent"

    # -- sentences --------------------------------------------------------------------
    def sentence(self) -> str:
        shape = self.rng.choice(SHAPES)
        body = shape(self)
        opener, closer = self.pick(OPENERS), self.pick(CLOSERS)
        text = " ".join(part for part in (opener, body, closer) if part)
        return normalise(text)

    def unique(self, count: int, exclude: Iterable[str] = ()) -> list[str]:
        """`count` distinct sentences, none of them (normalised) in `exclude`."""
        avoid = {normalise(t) for t in exclude}
        out: list[str] = []
        seen: set[str] = set()
        for _ in range(count * 50):
            if len(out) == count:
                break
            text = self.sentence()
            if text in avoid or text in seen:
                continue
            seen.add(text)
            out.append(text)
        if len(out) < count:
            raise ValueError(f"only {len(out)} distinct sentences of {count} asked for")
        return out


Shape = Callable[[VariedText], str]


def _greeting(g: VariedText) -> str:
    return g.rng.choice((
        f"hello my name is {g.name()} and i have a question about {g.service()}",
        f"good {g.pick(('morning', 'afternoon', 'evening'))} it is {g.name()} here",
        f"hi i am ringing on behalf of {g.person()}",
        f"hello i spoke to {g.name()} {g.date()} about {g.service()}",
        f"thank you for calling {g.pick(DEPARTMENTS)} you are speaking to {g.pick(FIRST_NAMES)}",
        f"good {g.pick(('morning', 'afternoon'))} how can i help you today",
    ))


def _identity(g: VariedText) -> str:
    return g.rng.choice((
        f"my account number is {g.digits(6, 10)}",
        f"the reference number is {g.digits(4, 9)}",
        f"my date of birth is {g.date()} nineteen {number_words(g.rng.randint(40, 99))}",
        f"my phone number is {g.digits(10, 11)}",
        f"my surname is {g.pick(SURNAMES)}",
        f"it is {g.spelled()}",
        f"that is {g.pick(SURNAMES)} spelt {g.spelled()}",
        f"the card ends in {g.digits(4, 4)}",
        f"the last four digits are {g.digits(4, 4)}",
        f"my customer number is {g.pick(LETTERS)} {g.digits(5, 7)}",
        f"the postcode is {g.postcode()}",
        f"my membership number is {g.cardinal()}",
    ))


def _address(g: VariedText) -> str:
    return g.rng.choice((
        f"i live at {g.address()}",
        f"please send it to {g.address()}",
        f"my old address was {g.address()}",
        f"the engineer should come to {g.address()}",
        f"i have moved from {g.pick(TOWNS)} to {g.pick(TOWNS)}",
    ))


def _money(g: VariedText) -> str:
    return g.rng.choice((
        f"i paid {g.money()} {g.pick(PAYMENT_WAYS)} on {g.date()}",
        f"i would like a refund of {g.money()}",
        f"how much is the {g.pick(SERVICES)} per month",
        f"can i pay the {g.money()} {g.pick(PAYMENT_WAYS)}",
        f"there is a charge of {g.money()} that i do not recognise",
        f"the discount of {g.percent()} was not applied",
        f"i was told it would cost {g.money()} a {g.pick(('month', 'week', 'year'))}",
        f"my balance should be {g.money()}",
        f"i owe {g.money()} on {g.service()}",
    ))


def _order(g: VariedText) -> str:
    return g.rng.choice((
        f"where is my order for {g.thing()}",
        f"i would like to return {g.thing()}",
        f"can i swap {g.thing()} for a {g.pick(COLOURS)} one",
        f"the order number is {g.digits(5, 9)}",
        f"i received {g.cardinal()} of them instead of {g.cardinal()}",
        f"when will {g.thing()} be back in stock",
        f"i want to cancel the order for {g.thing()}",
        f"the delivery was meant to be {g.date()} between {g.time()} and {g.time()}",
        f"i bought {g.thing()} in your {g.pick(TOWNS)} store",
    ))


def _fault(g: VariedText) -> str:
    return g.rng.choice((
        f"{g.thing()} {g.pick(FAULTS)}",
        f"ever since {g.date()} {g.service()} {g.pick(FAULTS)}",
        f"{g.service()} has been down since {g.time()}",
        f"i have restarted {g.thing()} {g.cardinal()} times",
        f"it is still under warranty i bought it {g.date()}",
    ))


def _booking(g: VariedText) -> str:
    return g.rng.choice((
        f"i need an engineer to look at {g.thing()}",
        f"is there anything available on {g.pick(WEEKDAYS)} at {g.time()}",
        f"i would like to book a table for {number_words(g.rng.randint(2, 12))} at {g.time()}",
        f"the visit on {g.date()} does not suit me any more",
        f"please confirm the booking by {g.pick(CHANNELS)}",
    ))


def _change(g: VariedText) -> str:
    return g.rng.choice((
        f"i want to cancel {g.service()}",
        f"please update my email address",
        f"can i add {g.person()} to {g.service()}",
        f"i want to switch to the cheaper {g.pick(SERVICES)}",
        f"can you change the name on {g.service()} to {g.name()}",
        f"i need a copy of my last {number_words(g.rng.randint(2, 12))} statements",
        f"can i upgrade {g.service()}",
    ))


def _others(g: VariedText) -> str:
    return g.rng.choice((
        f"his name is {g.name()} and he is my {g.pick(RELATIVES)}",
        f"my {g.pick(RELATIVES)} is {number_words(g.rng.randint(16, 90))} years old",
        f"i am calling for {g.person()} who cannot use the phone",
    ))


def _question(g: VariedText) -> str:
    return g.rng.choice((
        f"can you transfer me to {g.pick(DEPARTMENTS)}",
        f"is it possible to speak to {g.pick(DEPARTMENTS)}",
        "what is the earliest you can do",
        f"how long will the refund take",
        f"why was i charged for {g.service()}",
        f"do you have {g.thing()} in {g.pick(COLOURS)}",
        f"when does the offer end",
        f"can you spell that for me",
        f"could you repeat the last {number_words(g.rng.randint(2, 6))} digits",
        "sorry i did not catch that",
        f"what time do you close on {g.pick(WEEKDAYS)}",
        f"how many {g.pick(('points', 'minutes', 'days', 'payments'))} do i have left",
    ))


def _complaint(g: VariedText) -> str:
    return g.rng.choice((
        f"this is the {ordinal_words(g.rng.randint(2, 9))} time i have called about this",
        f"i have been on hold for {g.cardinal()} minutes",
        f"nobody told me the price would go up",
        f"i want to make a formal complaint about {g.service()}",
        f"the last person i spoke to said it was sorted",
        f"i am not happy with the service at all",
        f"you promised to call me back on {g.date()}",
        f"i was told the {g.pick(('engineer', 'courier', 'driver', 'fitter'))} would come at "
        f"{g.time()}",
    ))


def _closing(g: VariedText) -> str:
    return g.rng.choice((
        "thank you very much for your help", "that is all thank you goodbye",
        "no that is everything", "yes that is correct", "no that is wrong",
        f"okay i will wait for the {g.pick(CHANNELS)}", "brilliant thanks", "have a nice day",
        "sorry could you say that again", "yes please", "no thank you", "hold on a second",
        f"great speak to you on {g.pick(WEEKDAYS)}", "that is fine", "perfect",
        "just a moment let me check", "one second please",
    ))


SHAPES: tuple[Shape, ...] = (
    _greeting, _identity, _identity, _address, _money, _money, _order, _order, _fault,
    _fault, _booking, _change, _change, _others, _question, _question, _complaint, _closing,
)

_NOT_WORD = re.compile(r"[^a-z' ]+")


def normalise(text: str) -> str:
    """Lower-case words separated by one space, punctuation (but apostrophes) removed."""
    return " ".join(_NOT_WORD.sub(" ", text.lower().replace("-", " ")).split())


def vocabulary(seed: int = 0, samples: int = 20000) -> set[str]:
    """Words seen in `samples` generated sentences."""
    gen = VariedText(seed)
    return {w for _ in range(samples) for w in gen.sentence().split()}


def vocabulary_overlap(texts: Iterable[str], words: set[str]) -> float:
    """Share of the running words of `texts` (normalised) that are in `words`."""
    tokens = [w for t in texts for w in normalise(t).split()]
    return sum(w in words for w in tokens) / max(len(tokens), 1)
