"""pixgate: an OpenAI-compatible gateway for image generation, providers described in YAML."""

__version__ = "0.1.0"
