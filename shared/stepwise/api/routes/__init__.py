"""The API's routes, one Powertools ``Router`` per resource (health, agents, runs, threads, events, and the
reads of the web console; roles and memory in ``api/roles.py`` and ``api/memory.py`` beside their request
models). Each module's ``router(api)`` builds a fresh router for one resolver: a router delegates its
request state to the resolver that includes it, and there is one resolver per OS thread. Every route goes
through the engine client (``api.client``), the same methods the CLI uses.

Routes import the facade (``stepwise.api.facade.StepwiseApi``) and the error answers
(``stepwise.api.errors``), never ``stepwise.api.app``: that module builds the resolver from them."""
