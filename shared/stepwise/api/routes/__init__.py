"""The API's routes, one Powertools ``Router`` per resource (health, agents, runs, threads, events; roles and
memory in ``api/roles.py`` and ``api/memory.py`` beside their request models). Each module's ``router(api)`` builds a fresh router for
one resolver: a router delegates its request state to the resolver that includes it, and there is one
resolver per OS thread. Every route goes through the engine client (``api.client``), the same methods
the CLI uses."""
