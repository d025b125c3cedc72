"""The exactly-once consume → transform → produce shell every stage runs on (dedup and billing today).

The contract (keep it this small):

- A stage supplies a :class:`Stage`: its ``name`` (the consumer group is ``kafka.group_id(settings, name)``), the
  full names of its ``input_topic`` and ``deadletter_topic`` (its command resolves them with
  ``voicecall.topics.name``), ``make_core(partition)`` returning a fresh pure :class:`Core` for one input partition,
  and optionally a ``changelog_topic`` (compacted, with the same partition count as the input). The changelog may
  be the stage's own compacted output, when each output record is the whole state of its key (Kafka Streams' source
  topics for tables): the core then restores from what it published.
- Several inputs: ``more_inputs`` names topics co-partitioned with ``input_topic``. Partition number n of all of
  them is one unit — one core, one producer, one transaction — read by one loop (:mod:`.inputs`: the shell refuses
  to start when their partition counts differ, naming them, and uses the range assignor so that a member gets
  partition n of every input or of none).
- Timers: a core with ``tick(now)`` (:class:`Ticking`) and a ``tick_interval`` gets called every that many seconds
  with the wall clock; its timers live in its state and its outputs are committed like the others (:mod:`.ticks`).
- ``Core.process(record)`` turns one input record into a list of :class:`Record` (possibly empty). It must do no
  I/O and, when it raises, must not have changed its state: the shell then writes a deadletter record instead
  (reason ``processing-error``, the stage's name, origin topic/partition/offset, the original payload) — a bad
  record never crashes the stage and is never silently dropped. A record whose topic is the changelog goes to the
  changelog partition with the input's partition number; every other record is partitioned by its key. An output
  over the producer's limit (1 MiB) fails its transaction once; on the retry it is replaced by a deadletter
  record (reason ``too-large``) for its input (:mod:`.oversize`).
- ``Core.restore(record)`` applies one changelog record (value ``None`` = tombstone). Stateless cores do nothing.
  A record it cannot decode (wrong size or shape: not something its ``process`` wrote) makes it raise, again
  without changing its state: the shell skips that record, counts it (``voicecall_stage_restore_errors_total``)
  and logs where it is — a foreign record in the changelog never keeps a partition from becoming ready.
- ``await run_stage(settings, stage, stop, ready=...)`` runs until ``stop`` is set, then finishes and commits the
  batch in hand, closes its producers, leaves the group and returns. ``ready`` is set once every assigned
  partition is ready (state restored). Batching and timeouts come from :class:`StageSettings`.

Exactly once, the way Kafka Streams' first EOS mode does it (aiokafka's ``send_offsets_to_transaction`` takes only a
group id, so generation-based fencing of KIP-447 is not available):

- one transactional producer per assigned input partition number, ``transactional.id =
  f"{group}-{input_topic}-{partition}"``
  (:mod:`.transaction`). Initialising it on assignment fences the previous owner and makes the broker finish
  (abort) any transaction the previous owner left open — only *then* is the committed input offset read and the
  state restored from the changelog (:mod:`.assignment`, :mod:`.restore`), so both are exactly what the last
  committed transaction left;
- input is read with ``read_committed``; the partition stays paused while it is prepared;
- per batch (by count ``VOICECALL_BATCH_RECORDS`` and time ``VOICECALL_BATCH_TIME``) and per partition, one
  transaction holds the outputs, the changelog records and the input offset (``send_offsets_to_transaction``);
- a failed transaction is aborted and the partition is prepared again from scratch (new producer, state re-restored,
  seek to the committed offset), since the core's in-memory state already holds the aborted batch's changes;
- a batch fetched across a rebalance is thrown away (a new partition restarts at its committed offset, a kept one
  at the first record it did not process), and a partition that was revoked is never processed with its old
  producer: revocation waits for the batch in flight (:mod:`.runner`);
- a survivor of a rebalance keeps the ready partitions the sticky assignment gives back to it, as they were, unless
  someone committed to them in between (:mod:`.assignment`).
"""

from voicecall.runtime.record import Record
from voicecall.runtime.stage.contract import Core, Stage, StageSettings, Ticking
from voicecall.runtime.stage.inputs import InputsMismatch
from voicecall.runtime.stage.runner import run_stage, serve_stage

__all__ = ["Core", "InputsMismatch", "Record", "Stage", "StageSettings", "Ticking", "run_stage", "serve_stage"]
