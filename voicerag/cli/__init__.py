"""The `voicerag` command line: one module per command."""
