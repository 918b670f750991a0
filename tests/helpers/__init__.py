"""Shared test helpers: data fixtures and Fake* stand-ins."""
