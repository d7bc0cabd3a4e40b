"""The dev-server GraphQL API (``/v0/gql``) that Inngest's tools and SDK test suites use.

Built with strawberry: ``schema`` assembles ``queries.Query`` and ``mutations.Mutation`` over the
types in ``registry_types`` (apps, functions), ``legacy_types`` (``Event``, ``FunctionRun``,
``StreamItem``), ``trace_types`` (spans and outputs folded from run history) and ``run_types``
(``FunctionRunV2``, connections, ``EventV2``, triggers); ``listing`` pages runs and events
(``cel_filter`` judges their CEL ``query`` off the event loop), ``rerun`` schedules reruns,
``context`` memoises reads per request, ``errors`` are the failures clients cause, and
``http.ROUTES`` are the Litestar handlers the app mounts.  What one request may cost is bounded
in ``limits`` (every number, with its reason), checked before execution by ``guard``, and
enforced during it by ``scope`` (one connection per pool, owned tasks, a deadline).
"""

from __future__ import annotations

from app.graphql.http import PATH, ROUTES
from app.graphql.schema import build_schema

__all__ = ["PATH", "ROUTES", "build_schema"]
