"""``[batch]``: defaults, validation with key paths, the webhook secret, the outputs dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import (
    BatchConfig,
    ConfigError,
    GatewayConfig,
    Secret,
    parse_config,
    reload_diff,
)


def test_defaults_leave_the_batch_api_off() -> None:
    cfg = GatewayConfig().batch
    assert cfg == BatchConfig()
    assert (cfg.root, cfg.concurrency, cfg.max_files_per_job) == (Path(""), 2, 10000)
    assert (cfg.webhook_secret, cfg.webhook_timeout_s, cfg.retries) == (None, 10.0, 3)
    assert cfg.outputs_in(Path("/var/lib/gw")) == Path("/var/lib/gw/transcriptions")


def test_paths_are_relative_to_the_config_file_and_the_secret_is_hidden() -> None:
    cfg = parse_config({"batch": {"root": "recordings", "out_dir": "/srv/out",
                                  "webhook_secret_env": "BATCH_SECRET", "concurrency": 8}},
                       {"BATCH_SECRET": "s3cret"}, Path("/etc/gw")).batch
    assert cfg.root == Path("/etc/gw/recordings")
    assert cfg.outputs_in(Path("/var/lib/gw")) == Path("/srv/out")
    assert cfg.webhook_secret == Secret("s3cret") and "s3cret" not in repr(cfg)
    assert cfg.concurrency == 8


@pytest.mark.parametrize(("raw", "error"), [
    ({"concurrency": 0}, "batch.concurrency: must be"),
    ({"concurrency": 65}, "batch.concurrency: must be"),
    ({"max_files_per_job": 0}, "batch.max_files_per_job: must be"),
    ({"webhook_timeout_s": 0}, "batch.webhook_timeout_s: must be"),
    ({"retries": 11}, "batch.retries: must be"),
    ({"root": 3}, "batch.root: must be a string"),
    ({"webhook_secret_env": "NOT_SET"}, "batch.webhook_secret_env:"),
    ({"colour": 1}, "batch.colour: unknown key"),
])
def test_bad_values_are_named(raw: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"batch": raw}, {}, Path("."))
    assert any(e.startswith(error) for e in info.value.errors), info.value.errors


def test_batch_keys_need_a_restart() -> None:
    plan = reload_diff(GatewayConfig(), parse_config({"batch": {"concurrency": 4}}, {},
                                                     Path(".")))
    assert plan.changed == () and plan.refused == ("batch.concurrency: needs a restart",)


def test_batch_jobs_need_the_asr() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"batch": {"root": "/srv/rec"}, "triton": {"asr_enabled": False}}, {},
                     Path("."))
    assert info.value.errors == ("batch.root: batch jobs need triton.asr_enabled = true",)
    parse_config({"triton": {"asr_enabled": False}}, {}, Path("."))    # batch off: fine
