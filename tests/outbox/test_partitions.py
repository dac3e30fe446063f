"""partition_key and partition_of: a stable split of aggregates into partitions."""

from __future__ import annotations

import subprocess
import sys
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tactical.outbox import partition_key, partition_of

names = st.text(min_size=1, max_size=40)


class TestPartitionKey:
    def test_key_is_crc32_of_type_and_id_in_31_bits(self) -> None:
        """The key is documented as CRC-32 of type, unit separator and id, masked to 31 bits."""
        expected = zlib.crc32(b"shipping.Shipment\x1fS-1") & 0x7FFF_FFFF
        assert partition_key("shipping.Shipment", "S-1") == expected

    def test_key_is_the_same_in_another_process(self) -> None:
        """A fresh interpreter (another string hash seed) computes the same key."""
        code = "from tactical.outbox import partition_key; print(partition_key('a.B', 'x-1'))"
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": "12345"},
            timeout=60,
        )
        assert int(result.stdout) == partition_key("a.B", "x-1")

    def test_type_and_id_are_not_merged(self) -> None:
        """Moving characters between type and id changes the key (the separator counts)."""
        assert partition_key("ab", "c") != partition_key("a", "bc")

    @given(names, names)
    def test_key_fits_a_signed_32_bit_column(self, aggregate_type: str, aggregate_id: str) -> None:
        """Every key is between 0 and 2**31 - 1."""
        assert 0 <= partition_key(aggregate_type, aggregate_id) <= 2**31 - 1


class TestPartitionOf:
    @given(names, names, st.integers(min_value=1, max_value=1024))
    def test_partition_is_the_key_modulo_the_count(
        self, aggregate_type: str, aggregate_id: str, partitions: int
    ) -> None:
        """The partition is in range and derived from the key alone."""
        partition = partition_of(aggregate_type, aggregate_id, partitions)
        assert 0 <= partition < partitions
        assert partition == partition_key(aggregate_type, aggregate_id) % partitions

    def test_aggregates_spread_over_every_partition(self) -> None:
        """A thousand aggregates leave no partition of eight empty or crowded."""
        counts = [0] * 8
        for number in range(1000):
            counts[partition_of("shipping.Shipment", f"S-{number}", 8)] += 1
        assert min(counts) > 80
        assert max(counts) < 170

    @pytest.mark.parametrize("partitions", [0, -3])
    def test_fewer_than_one_partition_is_refused(self, partitions: int) -> None:
        """Zero or negative counts are a ValueError naming the value."""
        with pytest.raises(ValueError, match=f"at least 1, got {partitions}"):
            partition_of("a.B", "1", partitions)

    @pytest.mark.parametrize("partitions", [True, 2.0, "4"])
    def test_a_count_that_is_not_an_int_is_refused(self, partitions: object) -> None:
        """A bool, float or string count is a TypeError naming its type."""
        with pytest.raises(TypeError, match=f"got {type(partitions).__name__}"):
            partition_of("a.B", "1", partitions)  # type: ignore[arg-type]
