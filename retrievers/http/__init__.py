"""The resilient async HTTP stack every external source calls through (one client per process).

Layers, each one job (outermost first): response cache → deadline → circuit breaker per host →
rate limit per host → retry → auth → httpx. See `client.py`.
"""
