"""The embedded default: a local broker (``voicecall broker``) and every service in one command (``voicecall dev``)."""
