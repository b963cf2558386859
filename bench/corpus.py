"""Call-centre sentences for the speech benches, spoken by the piper voice at 8 kHz
(tests/speech.py), cached by the hash of the sentence list."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.audio import speech_bounds_s
from tests.speech import piper_wavs, read_pcm

SENTENCES: tuple[str, ...] = (
    "Hello, I would like to check the status of my order please.",
    "My account number is four two seven nine one.",
    "Yes, please send the invoice to my email address.",
    "I was charged twice for the same delivery last month.",
    "Can you tell me when the technician will arrive?",
    "The internet connection drops every evening around eight.",
    "I need to change the billing address on my account.",
    "My parcel was supposed to arrive on Tuesday but it never came.",
    "Could you cancel my subscription at the end of this month?",
    "The reference number on the letter is five five three zero.",
    "I would like to speak to someone about a refund.",
    "Please update my phone number to the new one I gave you.",
    "The card ending in six one eight was declined this morning.",
    "How much would it cost to upgrade to the premium plan?",
    "I have been waiting on hold for almost twenty minutes.",
    "My password reset email never arrived in my inbox.",
    "Can I pay the remaining balance with a bank transfer?",
    "The product arrived damaged and the box was open.",
    "I moved house last week and need to transfer the service.",
    "Please confirm that the payment went through today.",
    "Is there an outage in my area right now?",
    "I want to add a second line to my mobile contract.",
    "The heating engineer did not turn up yesterday afternoon.",
    "Could you read back the last three transactions please?",
    "My date of birth is the third of March nineteen eighty.",
    "I never received the confirmation code by text message.",
    "We would like to book an appointment for next Friday.",
    "The meter reading this quarter looks far too high.",
    "Thank you, that answers my question, have a nice day.",
    "Can you send a replacement router to my home address?",
    "I am calling to report a lost credit card.",
    "The order contained the wrong size and colour.",
    "Please make a note that I called about this yesterday.",
    "What time does your store open on Sunday?",
    "I would like to dispute a charge on my statement.",
    "Could you transfer me to the technical support team?",
)


# The small asr_streaming_nemo checkpoint knows only its training domain: data_gen.py's
# call-centre templates (digits, amounts, dates, names, order status). These are held-out
# sentences of that generator (seed 1234, rows 150-299 of its held-out set: never in any
# training set, and not the rows train_small.py picks its best checkpoint on).
DOMAIN_SENTENCES: tuple[str, ...] = (
    "the amount due is three hundred and fifty two dollars and ninety four cents"
    " by august twenty first",
    "sure my package number is two two seven seven five five",
    "the status of parcel five seven four three nine eight six is shipped",
    "my phone number is six three three five four two two nine two six",
    "my name is laura clark",
    "my name is karen harris",
    "can you repeat that please",
    "my phone number is zero one zero one seven four three",
    "the status of ticket nine zero five four two is delayed",
    "no my refund number is seven one seven two seven eight two",
    "my phone number is three eight three nine zero two five",
    "my phone number is three zero two three one four five",
    "my name is anna harris",
    "i paid thirty two dollars on the fourteenth of february",
    "okay my refund number is nine five nine six nine zero",
    "my phone number is one four eight six seven nine eight three one eight",
    "i paid one thousand two hundred and twenty two dollars on the twenty seventh of may",
    "my name is anna thomas",
    "the status of payment one nine four nine nine five seven two is delivered",
    "the amount due is one thousand five hundred and fifty two dollars by the twelfth of january",
    "my name is daniel taylor",
    "okay my order number is seven one nine five",
    "the status of invoice four five eight six is delivered",
    "my account number is four nine four five eight six seven five",
    "i paid one hundred and sixty one dollars on the tenth of september",
    "my phone number is eight five eight six two four nine eight two",
    "the status of package one five five is processing",
    "the amount due is five hundred and twenty nine dollars by the eighteenth of august",
    "no thank you my payment number is two six six eight",
    "my name is peter miller",
    "my name is john lewis",
    "the status of parcel seven four two zero is returned",
    "where is my payment",
    "my account number is five five zero four five three one six nine",
    "the amount due is nineteen dollars by august ninth",
    "nope my ticket number is zero six one seven two",
)

# A second held-out set (issue 15): call-centre sentences written for it, in none of the
# other sets, not from any training generator (data_gen.py's templates, flywheel_corpus's),
# with names, addresses, amounts, dates and products, spoken by several voices (piper,
# flite, espeak-ng: bench/flywheel_corpus.VOICES in turn), brought to 8 kHz with soxr.
HELDOUT_SENTENCES: tuple[str, ...] = (
    "Hi, this is Margaret Okafor, I am calling about the washing machine I ordered.",
    "The delivery address is fourteen Willow Lane in Bristol.",
    "You billed me forty five pounds instead of thirty.",
    "Can we move the visit to the second of June in the morning?",
    "The new blender stopped working after only two weeks.",
    "Please post the contract to eighty one Kings Road, flat three.",
    "My husband Gregory opened the account, so he is the main holder.",
    "Our broadband bill went up by twelve pounds without any warning.",
    "I ordered the grey sofa and a matching footstool on Monday.",
    "Could somebody ring me back after half past four today?",
    "The plumber said the boiler needs a new pressure valve.",
    "Is it possible to freeze my gym membership over the summer?",
    "The courier left my parcel with the neighbour at number twelve.",
    "I would rather get store credit than wait for the refund.",
    "Her name is Priya Raman and she has my permission to talk to you.",
    "The laptop charger sparked when I plugged it in.",
    "We are moving to twenty seven Station Street on the fifth of August.",
    "The voucher for ten percent off did not work at checkout.",
    "The wardrobe came with two doors missing and no screws.",
    "Last month I paid sixty pounds but the statement says ninety.",
    "Can you spell the surname for me, is it Kowalski with a K?",
    "The fridge freezer is making a loud clicking noise at night.",
    "My daughter Chloe is seventeen, can she be added as a user?",
    "The flight to Madrid on the ninth of October was cancelled.",
    "I need a receipt for the two hundred and fifty pounds I paid.",
    "The television mount you installed is coming off the wall.",
    "Please cancel the direct debit that comes out on the first of each month.",
    "Mister Henderson from the Leeds branch promised me a callback.",
    "The coffee machine shows an error code and then switches off.",
    "I want the insurance to cover the phone screen as well.",
)

CORPORA: dict[str, tuple[str, ...]] = {"general": SENTENCES, "domain": DOMAIN_SENTENCES,
                                       "heldout": HELDOUT_SENTENCES}
_MODEL_CORPUS = {"asr_streaming_nemo": "domain"}
OWN = "own"                     # in a list of corpora: each model's own (corpus_name)
MULTI_VOICE = frozenset({"heldout"})


def corpus_name(model: str) -> str:
    """The sentence set a model is measured on: its own domain for the small NeMo model,
    the general call-centre sentences for every other model."""
    return _MODEL_CORPUS.get(model, "general")


def resolve_corpora(model: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The corpora to measure ``model`` on: ``own`` is its own (:func:`corpus_name`), other
    names are taken as they are (unknown ones raise ValueError); each at most once."""
    out: list[str] = []
    for name in names:
        resolved = corpus_name(model) if name == OWN else name
        if resolved not in CORPORA:
            raise ValueError(f"unknown corpus {name!r} (known: {OWN}, {', '.join(CORPORA)})")
        if resolved not in out:
            out.append(resolved)
    return tuple(out)


def corpus_voices(name: str) -> str:
    """Who speaks a corpus (for the result's parameters)."""
    if name in MULTI_VOICE:
        return "piper (joe-us), flite (slt, kal, awb), espeak-ng (en-us+m3, en-us+f2, en+m1)"
    return "piper (joe-us)"


@dataclass(frozen=True, slots=True)
class Utterance:
    text: str
    pcm: npt.NDArray[np.int16]     # 8 kHz mono
    speech_start_s: float          # first frame above the speech threshold
    speech_end_s: float            # end of the last frame above it

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 8000


def cache_dir(texts: tuple[str, ...]) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    return root / "asr-gateway-bench" / f"piper-{digest}"


def utterances(texts: tuple[str, ...] = SENTENCES) -> list[Utterance]:
    """Every text spoken by piper at 8 kHz (synthesized once, then read from the cache)."""
    folder = cache_dir(texts)
    wavs = [folder / f"speech-{i}.wav" for i in range(len(texts))]
    if not all(w.exists() for w in wavs):
        wavs = piper_wavs(list(texts), folder)
    out = []
    for text, wav in zip(texts, wavs, strict=True):
        pcm = read_pcm(wav)
        start, end = speech_bounds_s(pcm)
        out.append(Utterance(text, pcm, start, end))
    return out


def corpus_utterances(name: str) -> list[Utterance]:
    """A named corpus spoken at 8 kHz: piper alone, or several voices in turn for the
    multi-voice sets (bench.flywheel_corpus's voices; imported here, it imports this module)."""
    texts = CORPORA[name]
    if name not in MULTI_VOICE:
        return utterances(texts)
    from bench import flywheel_corpus  # here: flywheel_corpus imports this module
    return [u for u, _voice in flywheel_corpus.utterances(texts)]
