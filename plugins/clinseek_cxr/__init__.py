"""The built-in 'cxr' toolset plugin."""
