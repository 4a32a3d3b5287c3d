"""Typed clients of the services' internal APIs (`/internal/v1/...`, authenticated by the service token)."""
