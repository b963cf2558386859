"""SIP: message, SDP, transaction, dialog and registration cores (pure) and their shells.

Layer: package.
"""
