"""The suite's shared fixtures come from plugins (tests/plugins), its shared functions from
tests/helpers; a test package never imports another package's conftest."""

pytest_plugins = ["tests.plugins.databases", "tests.plugins.lanes", "tests.plugins.models"]
