# sed script: sip_configs/gateway.toml -> /etc/asr-gateway/gateway.toml for the units
# (make systemd-units). The sample's relative paths would resolve under /etc/, which the
# service cannot write (ProtectSystem=strict): state_dir becomes the gateway unit's
# StateDirectory=, a relative jsonl sink path a file of that name in its LogsDirectory=.
# make systemd-units fails when a relative path is left.
s|^state_dir = .*$|state_dir = "/var/lib/asr-gateway"         # the unit's StateDirectory|
s|^path = "\([^/"][^"]*/\)\{0,1\}\([^"/]*\)".*$|path = "/var/log/asr-gateway/\2"  # the unit's LogsDirectory|
