"""What a Kafka error means for a record the ingress sends: wait for Kafka, start a new producer, or give up on it.

aiokafka reports a broker's refusal per batch; the class of the error says whether sending the same record again can
ever succeed.
"""

from __future__ import annotations

from aiokafka import errors as kafka

# After a broker restart, batches that expired on our side leave the idempotent producer's sequence numbers out of
# step with the broker's, and every later send fails with one of these: only a new producer (new id) recovers.
FATAL_PRODUCER_ERRORS = (kafka.OutOfOrderSequenceNumber, kafka.UnknownProducerId, kafka.InvalidProducerEpoch,
                         kafka.InvalidProducerIdMapping, kafka.ProducerFenced)

# Errors that refuse the record itself: the same record will be refused again (UnknownError: codes aiokafka does not
# know, such as INVALID_RECORD for a record without key on a compacted topic; ValueError: the batcher's own refusal).
PERMANENT = (kafka.MessageSizeTooLargeError, kafka.RecordListTooLargeError, kafka.CorruptRecordException,
             kafka.InvalidTopicError, kafka.TopicAuthorizationFailedError, kafka.InvalidTimestampError,
             kafka.UnsupportedForMessageFormatError, kafka.PolicyViolationError, kafka.UnknownError, ValueError)

# Errors of a Kafka that is away or busy (or of a producer being replaced): wait for it.
TRANSIENT = (TimeoutError, ConnectionError, LookupError, kafka.KafkaTimeoutError, kafka.ProducerClosed)


def is_permanent(error: BaseException) -> bool:
    return isinstance(error, PERMANENT)


def is_transient(error: BaseException) -> bool:
    """Kafka away or busy, or a producer to renew: the record will go through once that passes."""
    return isinstance(error, TRANSIENT + FATAL_PRODUCER_ERRORS) or bool(getattr(error, "retriable", False))


def is_fatal_for_producer(error: BaseException | None) -> bool:
    return isinstance(error, FATAL_PRODUCER_ERRORS)
