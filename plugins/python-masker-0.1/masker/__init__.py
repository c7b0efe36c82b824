"""The sha256-masker's behaviour in Python, free of bindings so each part reads on its own."""
