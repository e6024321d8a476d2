"""Deciding, on bytes alone, whether signed update metadata may be believed."""
