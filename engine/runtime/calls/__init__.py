"""One upstream call run from a provider file: render, send, read, poll, stream."""
