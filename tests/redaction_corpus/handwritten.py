"""Hand-written dialogues of the redaction corpus: whole calls as they go (small talk,
several entities, read-backs by the agent, corrections, fillers in the middle of a number),
and PII-free calls dense with numbers."""

from __future__ import annotations

from tests.redaction_corpus.forms import Pii, Seg

Turn = tuple[str, list[Seg]]
Hand = tuple[str, str, list[Turn], list[str], str]


def a(*segs: Seg) -> Turn:
    return ("agent", list(segs))


def c(*segs: Seg) -> Turn:
    return ("customer", list(segs))


def card(value: str, surface: str, form: str = "hand") -> Pii:
    return Pii("card", value, surface, form)


PII: tuple[Hand, ...] = (
    ("hand-pay-bill", "pii", [
        a("Thanks for calling Northwind Energy, this is Sam. How can I help?"),
        c("Hi, I'd like to pay my outstanding balance of $182.40."),
        a("No problem. Can I take the long card number, please?"),
        c("Sure. It's ", card("5478876232860127", "5478 8762 3286 0127"), "."),
        a("And the expiry?"),
        c(Pii("expiry", "03/27", "Oh three twenty seven", "pairs"), "."),
        a("And the three digits on the back."),
        c(Pii("cvv", "419", "Four one nine", "words"), "."),
        a("Thank you, that's gone through, your reference is 88213."),
    ], ["card", "expiry", "cvv", "dialogue"], "a whole payment; the reference must stay"),
    ("hand-card-hesitant", "pii", [
        a("Go ahead with the card number."),
        c("Okay, ", Pii("card", "4982", "4982", "group_num"), ","),
        c(Pii("card", "59791907", "5979, 1907", "group_num"), ","),
        c("um, ", Pii("card", "4830", "4830", "group_num"), "."),
    ], ["card", "multi_turn"], "one card over three finals, two groups in the middle one"),
    ("hand-card-correction", "pii", [
        a("What's the card number?"),
        c("It's ", card("4012888888881881", "4012 8888 8888 1881"),
          ", sorry, no, I mean, yes, that's right."),
    ], ["card", "dialogue"], ""),
    ("hand-amex-cid", "pii", [
        a("Which card will you be using today?"),
        c("The Amex. It's ", card("378282246310005", "3782-822463-10005", "hyphens"), "."),
        a("And the four digit code on the front?"),
        c(Pii("cvv", "7731", "Seven seven three one", "words"), "."),
    ], ["card", "cvv", "amex"], ""),
    ("hand-discover-double", "pii", [
        a("Can you read the card number for me?"),
        c(card("6011111111111117", "Six oh one one, double one one one, one one one one, one "
               "one one seven", "repeats"), "."),
    ], ["card", "discover"], ""),
    ("hand-card-readback", "pii", [
        a("What's the card number?"),
        c(card("5105105105105100", "Five one oh five, one oh five one, oh five one oh, five "
               "one oh oh", "words"), "."),
        a("Let me read that back: ", card("5105105105105100", "5105 1051 0510 5100",
                                           "spaced"), ", is that right?"),
        c("Yes, that's right."),
    ], ["card", "agent_readback"], "the agent's read-back is PII on the agent channel"),
    ("hand-card-filler", "pii", [
        a("And the card number, please."),
        c("It's ", card("4242424242424242", "4242 4242, hold on, my glasses, 4242 4242",
                        "split_by_filler"), "."),
    ], ["card", "filler"], "filler words in the middle of the number"),
    ("hand-card-word-hyphens", "pii", [
        a("Okay, read me the card number."),
        c(card("4111111111111111", "Four-one-one-one, one-one-one-one, one-one-one-one, "
               "one-one-one-one", "word_hyphens"), "."),
    ], ["card", "words"], "Whisper sometimes hyphenates spelled-out digits"),
    ("hand-card-whisper-grouping", "pii", [
        a("What's the long number on the card?"),
        c("It's ", card("2223003122003222", "2223 00 31 22 00 3222", "irregular_groups"),
          "."),
    ], ["card", "mastercard"], "ASR regroups the digits"),
    ("hand-card-garbled-dropped", "pii", [
        a("Can I have the card number?"),
        c(card("411111111111111", "Four one one one, one one one one, one one one, one one "
               "one one", "garbled_words"), "."),
    ], ["card", "garbled"], "one digit lost by ASR: 15 digits, Luhn fails"),
    ("hand-ssn-woolworth", "pii", [
        a("For security, can you verify your full social security number?"),
        c("Yeah, it's ", Pii("ssn", "078051120", "078-05-1120", "hyphens"), "."),
    ], ["ssn"], ""),
    ("hand-ssn-split", "pii", [
        a("Can I have your social?"),
        c(Pii("ssn", "53622", "Five three six, two two", "group_words"), "..."),
        c(Pii("ssn", "4719", "four seven one nine", "group_words"), "."),
    ], ["ssn", "multi_turn"], "an SSN over two finals"),
    ("hand-email-spelled", "pii", [
        a("What email should I send it to?"),
        c("It's ", Pii("email", "k.obrien@outlook.com",
                       "k dot obrien, that's o b r i e n, at outlook dot com", "spelled"), "."),
        a("So that's ", Pii("email", "k.obrien@outlook.com", "k.obrien@outlook.com",
                            "written"), "?"),
        c("Yes."),
    ], ["email", "agent_readback"], ""),
    ("hand-email-whisper", "pii", [
        a("Can I get an email address?"),
        c("Sure, it's ", Pii("email", "sarah.j.miller84@gmail.com",
                             "sarah.j.miller84@gmail.com", "written"), "."),
    ], ["email"], ""),
    ("hand-email-dash", "pii", [
        a("And your work email?"),
        c("It's ", Pii("email", "dwright@acme-corp.com", "d wright at acme dash corp dot com",
                       "spoken"), "."),
    ], ["email"], ""),
    ("hand-email-one-word", "pii", [
        a("What's the email on the account?"),
        c(Pii("email", "johnsmith@gmail.com", "John smith, all one word, at gmail dot com",
              "spoken"), "."),
    ], ["email"], ""),
    ("hand-email-underscore", "pii", [
        a("Where should the receipt go?"),
        c("To ", Pii("email", "tom_clark99@yahoo.com",
                     "tom underscore clark ninety nine at yahoo dot com", "spoken"), "."),
    ], ["email"], ""),
    ("hand-phone-uk-readback", "pii", [
        a("And a contact number?"),
        c(Pii("phone", "07700900456", "Oh seven seven double oh, nine double oh, four five six",
              "repeats"), "."),
        a(Pii("phone", "07700900456", "07700 900456", "national"), ", lovely."),
    ], ["phone", "uk", "agent_readback"], ""),
    ("hand-phone-extension", "pii", [
        a("Is there a daytime number?"),
        c("My work number is ", Pii("phone", "2125550187", "(212) 555-0187", "parens"),
          " extension 42."),
    ], ["phone", "us"], ""),
    ("hand-phone-callback", "pii", [
        a("We'll call you back on ", Pii("phone", "16465550143", "+1 646 555 0143",
                                         "plus_one"), ", is that still good?"),
        c("Yes, that's fine, after 5 please."),
    ], ["phone", "us", "agent_readback"], "the time must stay"),
    ("hand-iban-de-spoken", "pii", [
        a("Can you give me the IBAN?"),
        c(Pii("iban", "DE89370400440532013000",
              "D E eight nine, three seven oh four, oh oh four four, oh five three two, oh one "
              "three oh, oh oh", "spelled"), "."),
    ], ["iban", "DE"], ""),
    ("hand-iban-two-turns", "pii", [
        a("What's your IBAN?"),
        c(Pii("iban", "GB29NWBK6016", "GB29 NWBK 6016", "group_print"), "..."),
        c(Pii("iban", "1331926819", "1331 9268 19", "group_print"), "."),
    ], ["iban", "multi_turn"], "an IBAN over two finals"),
    ("hand-iban-lowercase", "pii", [
        a("I'll need the IBAN for the refund."),
        c("Sure, ", Pii("iban", "NL91ABNA0417164300", "nl91 abna 0417 1643 00", "lowercase"),
          "."),
    ], ["iban", "NL"], ""),
    ("hand-bank-one-breath", "pii", [
        a("Where would you like the refund paid?"),
        c("Routing is ", Pii("routing", "021000021", "021000021", "plain"),
          " and the account is ", Pii("bank_account", "000123456789", "000123456789", "plain"),
          "."),
    ], ["routing", "bank_account"], ""),
    ("hand-bank-self", "pii", [
        a("How can I help?"),
        c("I want to set up autopay from my checking account, it's ",
          Pii("bank_account", "771200459983", "7712 0045 9983", "spaced"),
          " at Wells Fargo, routing ", Pii("routing", "121000248", "one two one, oh oh oh, two "
                                            "four eight", "words"), "."),
    ], ["routing", "bank_account", "customer_context"], ""),
    ("hand-dob-july", "pii", [
        a("Can you confirm your date of birth?"),
        c(Pii("dob", "1976-07-04", "Fourth of July, nineteen seventy six", "uk_spoken"), "."),
        a("Thanks. And when did the problem start?"),
        c("On the 12th of March, so about two weeks ago."),
    ], ["dob", "date"], "the later plain date must stay"),
    ("hand-dob-uk-numeric", "pii", [
        a("And your date of birth?"),
        c("It's ", Pii("dob", "1958-11-23", "23/11/1958", "uk_slash"), "."),
    ], ["dob"], ""),
    ("hand-verify-three", "pii", [
        a("I need to verify you. Your date of birth?"),
        c(Pii("dob", "1991-05-02", "May 2nd, 1991", "us_written"), "."),
        a("And the last four of your social?"),
        c(Pii("ssn", "8821", "Eight eight two one", "last4_words"), "."),
        a("And the phone number on the account?"),
        c("It's ", Pii("phone", "3035550199", "303-555-0199", "hyphens"), "."),
    ], ["dob", "ssn", "phone", "dialogue"], ""),
    ("hand-expiry-cvv-breath", "pii", [
        a("Now the expiry and the security code, please."),
        c("Expiry is ", Pii("expiry", "12/26", "twelve slash twenty six", "slash_words"),
          " and the code is ", Pii("cvv", "047", "oh four seven", "oh"), "."),
    ], ["expiry", "cvv"], ""),
    ("hand-ni-long", "pii", [
        a("Can I take your National Insurance number?"),
        c("My national insurance number is ", Pii("ni_number", "JG103759B", "JG 10 37 59 B",
                                                  "spaced"),
          " and I've already sent the form."),
    ], ["custom"], ""),
    ("hand-policy-and-ni", "pii", [
        a("What's the policy number, and your NI number?"),
        c("It's ", Pii("policy_number", "POL772019", "POL-772019", "written"), ", and my NI is ",
          Pii("ni_number", "AB123456C", "AB 12 34 56 C", "spaced"), "."),
    ], ["custom"], ""),
    ("hand-card-then-order", "pii", [
        a("Can I take the card number?"),
        c("Yeah, ", card("6011027346468694", "6011 0273 4646 8694", "spaced"), "."),
        a("Thanks. And which order is this for?"),
        c("Order 4417 29, the one from the 3rd."),
    ], ["card", "order_number"], "the order number after the card must stay"),
)

CLEAN: tuple[Hand, ...] = tuple(
    (f"hand-clean-{k:02d}", "clean", turns, tags, "") for k, (turns, tags) in enumerate((
        ([c("Hi, I'm calling about order 77 41 93, it was meant to arrive Tuesday the 14th.")],
         ["order_number"]),
        ([c("I was charged $19.99 twice, on the 3rd and the 5th of this month.")], ["price"]),
        ([a("Your appointment is Thursday between 8 and 12."), c("Okay, 8 to 12, thanks.")],
         ["time"]),
        ([c("The tariff went up from 24.5 pence to 31 pence per kilowatt hour.")], ["rate"]),
        ([c("We're a family of 4, so we need at least 2 bedrooms.")], ["quantity"]),
        ([c("I need to cancel 2 of the 3 lines on the contract.")], ["quantity"]),
        ([c("I've tried restarting it like 10 times, and unplugging it for 30 seconds.")],
         ["quantity"]),
        ([c("The parcel is 2 kilos, 40 by 30 by 20 centimetres.")], ["quantity"]),
        ([a("Can you do 99 dollars a month for 24 months?"), c("Make it 89 and we have a deal.")],
         ["price"]),
        ([a("Your new PIN will arrive in 3 to 5 working days.")], ["duration"]),
        ([c("It says error code 0x80070005 on the screen.")], ["model"]),
        ([c("The update is version 4.12.1, released on the 9th.")], ["model"]),
        ([c("My flight is on the 23rd at 6:15 in the morning, gate 42.")], ["flight"]),
        ([c("The balance shows minus 1,204 dollars 56 cents.")], ["price"]),
        ([c("Between 2019 and 2021 I paid about 4,000 in total.")], ["year", "price"]),
        ([c("I'd like the 12 month plan, not the 24.")], ["duration"]),
        ([a("We open at nine, close at five thirty, Monday to Saturday.")], ["time"]),
        ([c("It's the 1st of the month so the bill is due, 65 pounds.")], ["date"]),
        ([c("I was told 48 to 72 hours, it's been 96.")], ["duration"]),
        ([c("It happens every day around 7 pm for about 20 minutes.")], ["time"]),
        ([c("Can you send 500 sheets of A4 and 10 toner cartridges?")], ["quantity"]),
        ([c("It's the X1 Carbon, 6th generation, 16 gigs of RAM, 512 gig drive.")], ["model"]),
        ([a("Your case reference is 1 0 0 4 5 7 2."), c("1004572, got it.")],
         ["reference", "hard"]),
        ([c("I'm calling from room 1412 at the Hilton, checkout is at 11.")], ["room"]),
        ([a("Can I take the long card number?"),
          c("Actually I'll pay the remaining 250 dollars next week, on the 15th.")],
         ["card_context", "hard"]),
        ([c("We've had 3 outages since January, the longest was 14 hours.")], ["duration"]),
        ([c("The invoice dated 03/04/2024 says 1,250 minutes, I only used 300.")],
         ["date", "quantity"]),
        ([c("I'm 72, I can't be climbing into the loft at 8 in the morning.")], ["age"]),
        ([c("The train number was 2K54, the 17:42 from Leeds.")], ["time"]),
        ([c("My kids are 6, 9 and 12, can they all go on the family plan?")], ["quantity"]),
        ([c("Channel 501 and 502 don't work, only up to 499.")], ["quantity"]),
        ([a("That's 3 items, total $214.97, arriving Friday the 21st.")], ["price", "date"]),
        ([c("I think I pay, like, forty nine ninety nine a month, and it was twenty nine "
            "ninety nine before.")], ["price"]),
        ([c("It's flat 3, 27 Queen Street, postcode EH2 1JX.")], ["address", "postcode"]),
        ([c("I've been with you since nineteen ninety nine, that's over twenty five years.")],
         ["year"]),
    ), 1))


def items() -> list[Hand]:
    return list(PII + CLEAN)
