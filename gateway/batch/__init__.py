"""Batch transcription of stored call recordings (issue 18).

- :mod:`gateway.batch.formats`: WAV header parsing, linear PCM decoding, the channel split
  (pure).
- :mod:`gateway.batch.audio`: reading WAV (PCM, float, µ-law, A-law), FLAC and raw
  ``.ul``/``.al`` files in blocks, with :class:`~gateway.batch.formats.BadAudio` for
  anything it cannot read.
- :mod:`gateway.batch.outputs`: the per-file outputs (the conversation document as JSON,
  WebVTT, SRT, text) and where they go (pure).
- :mod:`gateway.batch.task`: the per-file task, :func:`~gateway.batch.task.transcribe_file`:
  one file as one conversation through the ASR hub (back-pressure, nothing dropped) and the
  same processing stage as live calls.
- :mod:`gateway.batch.runner`: many files at once, the manifest and the progress line (the
  ``asr-gateway transcribe`` command is :mod:`gateway.transcribe`).
- :mod:`gateway.batch.store`: the HTTP jobs' SQLite store.

Layer: package.
"""
