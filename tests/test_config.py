from __future__ import annotations

import re

import pytest

from agent_analytics.config import Config, ConfigError, settings_table


def test_defaults_and_parsing():
    cfg = Config.from_env({})
    assert cfg.ingest_port == 4318 and cfg.cost_source == "estimated" and cfg.ingest_tokens == ()
    cfg = Config.from_env({"AA_INGEST_TOKENS": "a, b,,", "AA_ALLOW_NO_AUTH": "yes", "AA_COST_SOURCE": "Reported"})
    assert cfg.ingest_tokens == ("a", "b") and cfg.allow_no_auth and cfg.cost_source == "reported"


@pytest.mark.parametrize("env", [{"AA_INGEST_PORT": "x"}, {"AA_COST_SOURCE": "free"},
                                 {"AA_ALLOW_NO_AUTH": "maybe"}, {"AA_RETENTION_DAYS": "-1"}])
def test_bad_values_name_the_variable(env):
    with pytest.raises(ConfigError, match=next(iter(env))):
        Config.from_env(env)


def test_readme_carries_the_current_settings_table():
    readme = open("README.md").read()
    block = re.search(r"<!-- settings-table -->\n(.*)\n<!-- /settings-table -->", readme, re.S).group(1)
    assert block == settings_table(), "README's configuration table is stale: paste `agent-analytics config`"
