"""The billing context: payment schedules, in billing's own terms.

It knows nothing of policies: ``model`` and ``services`` speak of a *reference* (the
contract being billed) and amounts in cents. Only ``acl`` (the anti-corruption layer)
reads the policy context's published events and translates them into billing commands.
"""
