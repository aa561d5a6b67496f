"""Datasets read from disk (folder-per-class images)."""
