"""Prompt templates kept as files, their loader and a version hash of each."""
