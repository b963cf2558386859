"""asr-gateway: a telephony edge gateway that streams call audio to ASR models on Triton.

Layer: package (see tests/unit/test_layering.py for the layers).
"""

__version__ = "0.1.0"
