"""The IOC domain: zones, operations, targets, conflicts, markings and briefings.

Plain Python with no chat platform or database, so rules can be tested and benchmarked on their own.
"""
