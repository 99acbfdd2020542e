"""``sagellm bench``: workloads, load patterns, backends, metrics and the CI regression gate.

The pieces, one per file:

* workloads (``workloads/``) turn data sets and traces into :class:`BenchRequest` lists;
* :mod:`load_pattern` and :mod:`dispatcher` decide when each request is sent
  (closed loop with N users, open loop at a rate or on trace arrivals);
* backends (``backends/``) send them to the in-process engine or to an
  OpenAI-compatible server and time every token (:class:`RequestRecord`);
* :mod:`metrics` turns records into the report's numbers, :mod:`report`,
  :mod:`markdown` and :mod:`plots` write them, :mod:`gate` compares two reports;
* :mod:`bench_session` ties one invocation together (runs or a rate
  :mod:`sweep`, then the report), so scripts can benchmark without the CLI.
"""

from sagellm.engines.bench.record import RequestRecord
from sagellm.engines.bench.request import BenchRequest

__all__ = ["BenchRequest", "RequestRecord"]
