"""Schemathesis hooks for the sink's API (loaded by scripts/api-fuzz.sh).

One rule of the API joins two parameters, which an OpenAPI document cannot say in its schema
language: a time range `[from, to)` must not run backwards (`from` <= `to`) and may span at
most `x-framewire-max-range-ms` (the sink's `sink.api.max_range_ms`, which the served
document carries on the operations that take a range). The sink answers 400 to a range that
breaks it, naming the parameters and the limit; the sink's own tests check those 400s.

So that `positive_data_acceptance` asks the server only for requests the document promises
to accept, a *positive* case with both `from` and `to` gets them ordered and its `from`
moved up to the longest range before `to`. Negative cases and every other parameter are
left as generated.
"""

import schemathesis


def _as_int(value):
    """The integer a query value stands for (generated as an int or as its text), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    max_range = case.operation.definition.raw.get("x-framewire-max-range-ms")
    query = case.query
    if not isinstance(max_range, int) or not isinstance(query, dict):
        return case
    start, end = _as_int(query.get("from")), _as_int(query.get("to"))
    if start is None or end is None:
        return case
    start, end = min(start, end), max(start, end)
    start = max(start, end - max_range)
    as_text = isinstance(query["from"], str)
    query["from"], query["to"] = (str(start), str(end)) if as_text else (start, end)
    return case
