"""Logging, metrics and health checks shared by every lockstep layer."""
