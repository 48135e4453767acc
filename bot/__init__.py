"""Platform adapters (console, Matrix, Slack), the bridge, the scheduler and the wiring."""
