"""Where version stamps and cached values live: in process, or in Redis."""
