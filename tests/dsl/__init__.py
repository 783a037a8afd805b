"""Unit tests of the provider DSL: templates, expressions, sizes, request rendering."""
