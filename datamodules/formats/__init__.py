"""Readers (and writers) of dataset and result file formats."""
