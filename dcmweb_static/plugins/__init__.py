"""Plugins: the hookspecs, the manager (built by the caller and passed in), the API
types plugins see, and the built-in plugins (registered like third-party ones)."""
