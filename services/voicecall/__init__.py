"""voicecall-pipeline: Huawei Cloud Voice Call pushes → Kafka → dedup, billing, recordings."""

__version__ = "0.1.0"
