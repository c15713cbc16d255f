"""Placeholder replaced below."""
def available():
    return "not yet"
