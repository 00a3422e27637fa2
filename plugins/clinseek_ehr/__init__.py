"""The built-in 'ehr' toolset plugin."""
