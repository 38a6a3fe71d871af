"""The probes' HTTP face: `GET /api/health` and `GET /api/ready` (the probing lives in `runtime.health`).

A package of its own because readiness details depend on who asks, which needs `auth`, and `auth` imports
`runtime`: the router sits above both.
"""
