"""Unit tests of config loading: diagnostics, interpolation, YAML positions."""
