# sed script: sip_configs/gateway.toml -> /etc/asr-gateway/gateway.toml for the units
# (make systemd-units). The sample's relative paths would resolve under /etc/, which the
# service cannot write (ProtectSystem=strict); these go to the gateway unit's
# StateDirectory= and LogsDirectory= instead.
s|^state_dir = "[^"]*"\( *\)#.*$|state_dir = "/var/lib/asr-gateway"\1# the unit's StateDirectory|
s|^path = "[^"]*events\.jsonl"\( *\)#.*$|path = "/var/log/asr-gateway/events.jsonl"\1# the unit's LogsDirectory|
