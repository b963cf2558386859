"""The summary document's word times (issue 19): each turn's redacted words with their
times, a redaction tag marked with its entity, and the agent's X-Agent-Id per call."""

from __future__ import annotations

import dataclasses

from gateway.analytics.summary import Summarizer
from gateway.config import RedactionConfig, RedactionEntities, RedactionTags
from gateway.events.processing import ProcessingStage
from gateway.events.types import ConversationSummary, SummaryDocument, to_wire
from gateway.redaction.processor import Redactor
from tests.unit.test_analytics_summary import answered, ended, final, offered


def _summary(config: RedactionConfig, headers: dict[str, str] | None = None
             ) -> SummaryDocument:
    agent = offered("a", "agent")
    if headers is not None:
        agent = dataclasses.replace(agent, headers=headers)
    events = [agent, answered("a", "agent"), offered("c", "customer"),
              answered("c", "customer"),
              final("a", "agent", "can I have your card number please", 0.5),
              final("c", "customer", "it is 4111 1111 1111 1111 thank you", 4.0),
              ended("a", "agent"), ended("c", "customer")]
    stage = ProcessingStage([Redactor(config), Summarizer()])
    out = [e for i, ev in enumerate(events) for e in stage.run(ev, 1000.0 + i).events]
    (summary,) = [e for e in out if isinstance(e, ConversationSummary)]
    return summary.summary


def test_each_turn_has_its_redacted_words_with_times_and_the_tag_marked() -> None:
    doc = _summary(RedactionConfig())
    agent, customer = doc.turns
    assert [w.word for w in agent.words] == agent.text.split()
    assert all(w.tag is None for w in agent.words)
    assert [w.word for w in customer.words] == ["it", "is", "[CARD]", "thank", "you"]
    tag = customer.words[2]
    assert tag.tag == "card" and [w.tag for w in customer.words].count("card") == 1
    # the tag spans the four groups' times: the raw words were 0.3 s apart
    assert (tag.start_s, tag.end_s) == (4.6, 5.75)
    assert all(a.end_s <= b.start_s for a, b in zip(customer.words, customer.words[1:],
                                                     strict=False))
    wire = to_wire(doc)["turns"][1]["words"][2]
    assert wire == {"word": "[CARD]", "start_s": 4.6, "end_s": 5.75,
                    "confidence": 0.9, "tag": "card"}


def test_a_tag_of_any_text_is_found_by_its_times() -> None:
    config = RedactionConfig(entities=RedactionEntities(card="last4"),
                             tags=RedactionTags(card="<card>"))
    customer = _summary(config).turns[1]
    tagged = [w for w in customer.words if w.tag is not None]
    assert [(w.word, w.tag) for w in tagged] == [("<card> ****1111", "card")]


def test_the_agent_id_header_is_kept_per_call() -> None:
    doc = _summary(RedactionConfig(), headers={"x-agent-id": "agent-0042"})
    by_call = {c.call_id: c.agent_id for c in doc.calls}
    assert by_call == {"a": "agent-0042", "c": None}
