"""Slack: the Bolt adapter (HTTP and Socket Mode), its alerts, markup, names and error classes."""
