"""One package per task family (classification, atari), each behind the same small protocol."""
