"""Streaming ASR over Triton: the contract codec (pure), per-channel audio queues (pure) and the
gRPC streaming shell.

Layer: package.
"""
