-- wrk script for liter-llm benchmarks: POST a small non-streamed chat completion and,
-- when the run ends, print one JSON line (prefixed "BENCH_JSON ") with the latency
-- percentiles in microseconds, the request count and the error counts.
--
-- Environment (read by every wrk thread):
--   BENCH_KEY    bearer token (default "sk-bench")
--   BENCH_MODEL  model name   (default "gpt-4o")

local key = os.getenv("BENCH_KEY") or "sk-bench"
local model = os.getenv("BENCH_MODEL") or "gpt-4o"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Benchmark: say hello."}],"max_tokens":16}'

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"min_us":%d,"mean_us":%.2f,"stdev_us":%.2f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.min, latency.mean, latency.stdev,
    e.connect, e.read, e.write, e.status, e.timeout))
end
