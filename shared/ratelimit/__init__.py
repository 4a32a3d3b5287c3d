"""Rate limiting: fixed windows and concurrency leases, in process (the embedded default) or in Redis (shared
by replicas)."""
from shared.ratelimit.factory import leases_for, limiter_for
from shared.ratelimit.leases import LeaseDecision, Leases, Pool, renewed
from shared.ratelimit.limits import Decision, Limit, Limiter, LimiterUnavailable, LimitState

__all__ = ["Decision", "LeaseDecision", "Leases", "Limit", "LimitState", "Limiter", "LimiterUnavailable", "Pool",
           "leases_for", "limiter_for", "renewed"]
