"""The HTTP server: /healthz, /metrics and the common operating picture (/cop/...)."""
