"""Built-in plugins: `strip-private` and `deidentify`, registered like third-party ones."""
