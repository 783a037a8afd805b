"""What outlives one request: the live config, hot reload and the large-body gate."""
