"""Which upstream attempts a request gets, and what failures do to keys and providers."""
