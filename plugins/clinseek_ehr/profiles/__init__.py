"""Built-in schema profiles (YAML data). A package so that wheels carry the files."""
