"""The recording downloader: which calls have a recording, fetching it safely, storing it once."""
