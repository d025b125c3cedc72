"""Replay and inspection tools: ``voicecall replay reset|copy`` and ``voicecall tail``."""
