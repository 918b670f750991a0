"""Tracking metrics (HOTA, MOTA, IDF1) and their loaders and loggers."""
