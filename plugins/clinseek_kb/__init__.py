"""The built-in 'kb' toolset plugin."""
