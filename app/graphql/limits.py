"""Every number that bounds what one ``/v0/gql`` request may cost, with the reason for each.

A client controls how much work a GraphQL request asks for, so each kind of work has a limit
that every legitimate client passes with a wide margin.  The yardsticks are the documents real
clients send: the Inngest SDKs' test helpers (``run``, ``runTrigger``, ``run { trace {
childrenSpans } }``, ``runTraceSpanOutputByID``, ``event { functionRuns }``: under 1 KB, 60
tokens, depth 5, cost below 300), Stepwell's own suites (the heaviest is a ``stream`` of 999
events with their runs, cost ~13,000; a ``runs`` page with ``totalCount``, ~1,100) and
GraphiQL's introspection query (~1.7 KB, ~200 tokens, depth 15 counting the leaves, cost
~230).  Stepwell's dev UI
is server-rendered and does not use GraphQL.

Document limits are checked before execution (``app.graphql.guard``) and refused with HTTP 400;
execution limits (deadline, CEL budget) end the request with a GraphQL error.
"""

from __future__ import annotations

# --- the HTTP request ---

#: Bytes of a ``POST`` body (413 above).  The query is small; variables may carry an
#: ``invokeFunction`` payload, and Inngest accepts events of up to 3 MiB.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Bytes of the query document: 40 times GraphiQL's introspection query, far above any
#: hand-written query, and small enough to parse in a few milliseconds.
MAX_QUERY_BYTES = 64 * 1024
#: Lexical tokens of the document (graphql-core stops parsing past it): 50 times the
#: introspection query; bounds parse time whatever the bytes are made of.
MAX_TOKENS = 10_000
#: Aliased fields, counted through fragments (a fragment spread N times counts N times).
#: Aliases are how one document multiplies a root field; clients use a handful at most.
MAX_ALIASES = 100
#: Nested field levels, leaves, fragments and introspection included: GraphiQL's introspection
#: reaches 15 (``ofType`` chains), SDK queries 5; nesting costs stack depth in the executor.
MAX_DEPTH = 30
#: Estimated work units (see below).  13,000 for the heaviest query in our suites, under 1,200
#: for a ``runs`` page with its ``totalCount``; 50,000 units execute in well under a second.
MAX_COST = 50_000

# --- the cost model (``guard.measure``) ---
#
# Every selected field costs 1 per item it is resolved for: a list multiplies the cost of its
# children by the number of items it is expected to return.  Paged connections use the page
# size the request asks for (``first``, as ``page_size`` will apply it); other lists use the
# number below.  A few fields cost a fixed amount more, whatever their children.

#: ``totalCount`` is a COUNT over the whole window, or a CEL scan of up to ``CEL_SCAN_LIMIT``
#: rows with a ``query``: about what materialising a thousand fields costs.
TOTAL_COUNT_COST = 1_000
#: Loading and folding a run's whole history (its trace, or one span output of it).
HISTORY_COST = 100
#: Each root mutation writes, and some call out over HTTP (``createApp`` syncs the app).
MUTATION_COST = 100
#: Expected sizes of the lists that are not paged.
APPS_ESTIMATE = 20
FUNCTIONS_ESTIMATE = 50
#: Runs one event triggered (one per matching function), events one run was triggered by.
RUNS_PER_EVENT = 3
EVENTS_PER_RUN = 10

# --- page sizes (the resolvers apply these; the cost model mirrors them) ---

#: Page size of ``runs``/``eventsV2`` when ``first`` is outside (0, ``MAX_PAGE``), as upstream.
DEFAULT_PAGE = 40
MAX_PAGE = 400
#: How many events ``events`` returns (Inngest's dev server: ``cqrs.MaxEvents``).
MAX_EVENTS = 51
#: The most items one ``stream`` returns.
MAX_STREAM = 1000


def page_size(first: int) -> int:
    """The page a connection serves for ``first``: outside (0, MAX_PAGE), the default."""
    return first if 0 < first < MAX_PAGE else DEFAULT_PAGE


# --- execution ---

#: Wall-clock seconds one request may run; then it is answered with an error and everything it
#: holds is released.  Well above the statement timeout of one read (15 s), so a slow query
#: surfaces as that query's error first.
REQUEST_SECONDS = 30.0
#: Rows one CEL ``query`` scan reads (a page, or a ``totalCount``).  A simple comparison costs
#: ~0.2 ms per row on a small machine, so a full scan takes under half a second of evaluation.
CEL_SCAN_LIMIT = 2_000
#: Rows read and handed to the evaluation thread at a time.
CEL_BATCH = 500
#: Seconds of CEL evaluation one request may use, over all its scans: several full scans of a
#: simple filter (a page and its ``totalCount`` share verdicts, so they count about once).
CEL_SECONDS = 2.0
#: Threads evaluating CEL filters for the whole process (each request uses one at a time), so
#: that hostile filters can neither freeze the event loop nor take the default executor, which
#: DNS resolution of outbound calls needs.
CEL_THREADS = 2
