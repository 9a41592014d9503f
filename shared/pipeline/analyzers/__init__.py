"""The built-in frame analyzers, one module each."""
