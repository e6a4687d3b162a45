"""The console scripts (mfkeras-fuse, -train, -evaluate, -export) and the flag helpers they share."""
