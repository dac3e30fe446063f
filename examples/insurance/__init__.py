"""Insurance: a policy context (policies and claims) and a billing context fed by its events.

- :mod:`examples.insurance.policy`: the ``InsurancePolicy`` aggregate with ``Claim`` child
  entities, its value objects and events, application services and a relational SQL mapping.
- :mod:`examples.insurance.billing`: payment schedules, a model of their own, created and
  stopped by an anti-corruption layer that translates the policy context's events.
- :mod:`examples.insurance.app`: wiring of both contexts on one engine and one event bus.

Run the narrated scenario with ``python -m examples.insurance``.
"""
