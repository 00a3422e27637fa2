"""The clinical reference corpus (Markdown, the project's own words, each section citing its source)."""
