"""Conversation analytics and agent assist (issue 17): processors of the event stage that run
after redaction, so they only ever see redacted text.

- :mod:`gateway.analytics.summary`: the conversation summary document (builder, text and
  WebVTT renderers) and the processor that emits ``conversation.summary`` at the end.
- :mod:`gateway.analytics.sentiment`: a lexicon-based sentiment processor, the example of
  a model-based signal (``sentiment.scored``).
- :mod:`gateway.analytics.files`: the sink that writes each summary beside the recording.

Layer: package (every module in it is pure core except ``files``, the sink).
"""
