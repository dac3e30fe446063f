"""Complete bounded contexts built only on tactical's public API.

Run one with ``python -m examples.insurance`` or ``python -m examples.shipping``.
"""
