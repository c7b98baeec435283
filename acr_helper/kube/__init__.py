"""The Kubernetes adapter: the only package that imports `kubernetes`.

client.py (one Configuration, raw JSON requests, rate limit, request reporting), listwatch.py +
store.py + cache.py (list/watch caches and snapshots), convert.py (wire dicts -> core values),
apply.py (executes a Plan), events.py (aggregated core/v1 Events), leader.py (Lease election),
secrets.py (one-shot Secret reads). fakeserver*.py: the in-process fake API server.
"""
