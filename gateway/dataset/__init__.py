"""The training-dataset export (issue 19): consented calls -> de-identified segments.

Pure core:

- :mod:`gateway.dataset.model`: the value types (:class:`~gateway.dataset.model.Word`,
  :class:`~gateway.dataset.model.Utterance`, :class:`~gateway.dataset.model.Segment`,
  :class:`~gateway.dataset.model.SegmentRules`).
- :mod:`gateway.dataset.segment`: utterances -> 10-30 s segments per channel.
- :mod:`gateway.dataset.normalize`: text the way NeMo recipes expect it.
- :mod:`gateway.dataset.speakers`: pseudonyms and hashed ids (HMAC).
- :mod:`gateway.dataset.split`: train/dev/test by conversation, no speaker in two splits.
- :mod:`gateway.dataset.card`: the Markdown dataset card.
- :mod:`gateway.dataset.review`: the review list and the correction format.

Layer: package.
"""
