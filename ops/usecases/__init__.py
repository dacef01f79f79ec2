"""The application layer: what the system does, once, for every front end.

The CLI (``ops/cli``), the HTTP API (``ops/hooks/api.py``), the console (``ops/console``) and the
workers call these functions and only translate: arguments in, records out, errors into their own
form (an exit status, an HTTP status, a page). A front end that embeds a query or searches a store
itself is assembling a use case by hand; put the assembly here instead. Each use case takes the
application context (:class:`ops.app.App`: settings, models, stores) and plain values.

- :mod:`ops.usecases.recall`: a text or an image → past videos, and the checks on a query.
- :mod:`ops.usecases.screen`: one video → per-policy verdicts and a decision (``sludge check``, the workers).
- :mod:`ops.usecases.bank`: exemplars from a text, an image or a video, added under a (new) policy.
- :mod:`ops.usecases.times`: reading and writing the points in time that filters take.
"""
