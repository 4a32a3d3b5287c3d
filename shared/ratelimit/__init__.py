"""Rate limiting: fixed windows counted in process (the embedded default) or in Redis (shared by replicas)."""
from shared.ratelimit.factory import limiter_for
from shared.ratelimit.limits import Decision, Limit, Limiter, LimiterUnavailable, LimitState

__all__ = ["Decision", "Limit", "LimitState", "Limiter", "LimiterUnavailable", "limiter_for"]
