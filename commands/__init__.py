"""The one chat grammar for every platform, the rules of who may do what, and the command handlers."""
