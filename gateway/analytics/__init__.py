"""Conversation analytics and agent assist (issue 17): processors of the event stage that run
after redaction, so they only ever see redacted text.

- :mod:`gateway.analytics.text`: normalisation (numbers, punctuation, stems) and word
  similarity for phrase matching, tolerant of ASR errors.
- :mod:`gateway.analytics.rules`: ``[[analytics.rules]]`` compiled, and the phrase index.
- :mod:`gateway.analytics.engine`: the rules processor: ``category.matched``,
  ``compliance.passed`` / ``compliance.missed`` (deadlines on the stage's timer) and
  ``assist.hint``.
- :mod:`gateway.analytics.summary`: the conversation summary document (builder, text and
  WebVTT renderers) and the processor that emits ``conversation.summary`` at the end.
- :mod:`gateway.analytics.sentiment`: a lexicon-based sentiment processor, the example of
  a model-based signal (``sentiment.scored``).
- :mod:`gateway.analytics.files`: the sink that writes each summary beside the recording.

Layer: package (every module in it is pure core except ``files``, the sink).
"""
