"""Matrix: the adapter (sync, sending), its encryption, direct rooms, event and markup translation."""
