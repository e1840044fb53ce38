"""The API's routes, one Powertools ``Router`` per resource (health, agents, runs, threads; roles and memory
live in ``api/roles.py`` and ``api/memory.py``). Each module's ``router(api)`` builds a fresh router for
one resolver: a router delegates its request state to the resolver that includes it, and there is one
resolver per OS thread. Every route goes through the engine client (``api.client``), the same methods
the CLI uses."""
