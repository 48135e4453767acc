"""The AIS feed: listening (UDP/TCP) and the decoding process of its own."""
