"""The request path, grouped by concern:

- `routing/`: which upstream attempts a request gets (router, key pools, circuit breakers,
  failure kinds, verdicts, Retry-After);
- `calls/`: running one upstream call from a provider file (executor, HTTP send, SSE,
  fan-out, template context, prompt optimizer, streaming sink);
- `images/`: images in and out (client inputs and SSRF-guarded fetch, input transforms,
  result download and normalising to url or b64_json);
- `lifecycle/`: what outlives one request (live config and hot reload, the large-body gate).

`service.py` ties them together for one request (failover across targets and keys) and
`attempt.py` runs one target with one key; `job.py` and `request.py` are the data that
travels through; `redact.py` masks secrets on every path out."""
