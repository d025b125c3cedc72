"""The group assignor of a stage: sticky for one input, range (co-partitioned) for several."""

from __future__ import annotations

from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from voicecall.runtime.stage import inputs


class Metadata:
    """The cluster metadata an assignor reads: partitions per topic."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions[topic]))


def test_one_input_is_sticky_and_each_consumer_gets_its_own_assignor_class() -> None:
    (first,), (second,) = inputs.assignors(["a"]), inputs.assignors(["a"])
    assert issubclass(first, StickyPartitionAssignor) and first is not second


def test_several_inputs_keep_partition_n_of_every_input_on_one_member() -> None:
    (assignor,) = inputs.assignors(["status", "fee", "billing"])
    assert assignor is RangePartitionAssignor
    topics = ["status", "fee", "billing"]
    members = {f"m{i}": ConsumerProtocolMemberMetadata(0, topics, b"") for i in range(3)}
    assignment = assignor.assign(Metadata(dict.fromkeys(topics, 6)), members)
    owner: dict[int, set[str]] = {}
    for member, assigned in assignment.items():
        for _topic, partitions in assigned.assignment:
            for partition in partitions:
                owner.setdefault(partition, set()).add(member)
    assert sorted(owner) == list(range(6)) and all(len(members_) == 1 for members_ in owner.values()), owner
