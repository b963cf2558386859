"""RTP media: packet codecs, jitter buffer, G.711, RTCP, DTMF (pure) and the socket shells.

Layer: package.
"""
