"""Thin click commands; each calls into the library."""
