"""pixgate benchmark harness: `python -m bench.run [--quick] [--skip-litellm]` (see README.md)."""
