"""Real SIP peers for integration tests: Kamailio, sipp and a pjsua2 softphone.

Every peer runs as a child process with a hard time limit; nothing here keeps
pjsua2 or sipp state inside the pytest process.
"""
