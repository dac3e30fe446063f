"""The insurance example keeps its layers apart (tactical.testing's architecture rules)."""

from __future__ import annotations

import pytest

from tactical.testing import (
    INFRASTRUCTURE,
    assert_aggregates_reference_by_id,
    assert_no_infrastructure_imports,
    assert_value_objects_hold_no_entities,
)

POLICY_DOMAIN = (
    "examples.insurance.policy.values",
    "examples.insurance.policy.events",
    "examples.insurance.policy.model",
    "examples.insurance.policy.clock",
)
BILLING_DOMAIN = ("examples.insurance.billing.model",)


class TestLayers:
    def test_domains_import_no_infrastructure(self) -> None:
        """Neither domain layer imports SQLAlchemy, a driver, or tactical.sqlalchemy."""
        assert_no_infrastructure_imports(*POLICY_DOMAIN, *BILLING_DOMAIN)

    def test_billing_never_imports_the_policy_context(self) -> None:
        """Billing's model and services know nothing of policies; only the ACL reads them."""
        assert_no_infrastructure_imports(
            "examples.insurance.billing.model",
            "examples.insurance.billing.services",
            forbidden=(*INFRASTRUCTURE, "examples.insurance.policy"),
        )

    def test_the_acl_is_where_billing_meets_policies(self) -> None:
        """The rule above would catch the ACL: it is the one place that reads policy events."""
        with pytest.raises(AssertionError, match=r"acl -> examples\.insurance\.policy\.events"):
            assert_no_infrastructure_imports(
                "examples.insurance.billing.acl",
                forbidden=(*INFRASTRUCTURE, "examples.insurance.policy"),
            )

    def test_policy_context_never_imports_billing(self) -> None:
        """The upstream context does not depend on its downstream consumer."""
        assert_no_infrastructure_imports(
            "examples.insurance.policy",
            forbidden=("examples.insurance.billing",),
        )


class TestModel:
    def test_aggregates_reference_each_other_by_id(self) -> None:
        """No aggregate holds another aggregate."""
        assert_aggregates_reference_by_id(*POLICY_DOMAIN, *BILLING_DOMAIN)

    def test_value_objects_hold_no_entities(self) -> None:
        """Value objects are made of values only."""
        assert_value_objects_hold_no_entities(*POLICY_DOMAIN, *BILLING_DOMAIN)
