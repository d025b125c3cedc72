"""A stand-in for Huawei's Voice Call platform: calls, status and fee pushes with the re-push policy, and the
recording API. Library use: :class:`~voicecall.simulator.platform.Platform` and
:class:`~voicecall.simulator.recording_api.RecordingApi`; command line: ``voicecall simulate``."""
