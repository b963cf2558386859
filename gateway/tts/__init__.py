"""Spoken replies: Triton TTS client and paced RTP playout with barge-in.

Layer: package.
"""
