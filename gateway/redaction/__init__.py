"""PII redaction (issue 16): pure detectors and the redacting processor of the event stage.

- :mod:`gateway.redaction.entities`: entity names, the ``Found`` result, custom patterns.
- :mod:`gateway.redaction.numbers`: spoken and written numbers to digit runs over tokens.
- :mod:`gateway.redaction.detect`: the detectors (text tokens in, ``Found`` spans out).
- :mod:`gateway.redaction.processor`: the per-channel streaming redactor (a ``Processor``).

Layer: package (every module in it is pure core: no I/O, no clock reads, no asyncio).
"""
