"""The policy context: insurance policies, their holders and claims.

Its domain layer (``values``, ``clock``, ``events``, ``model``) imports nothing but tactical's
core; ``services`` is the application layer; ``sql`` is the persistence adapter.
"""
