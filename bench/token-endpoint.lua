-- wrk script (bench/lib.sh run_token_endpoint): client_credentials at the token endpoint, optionally with a
-- unique DPoP proof per request. Env: BASIC_AUTH (the Authorization header value); PROOFS=<file> (one proof per
-- line) enables DPoP; THREADS = wrk's -t, so each thread takes its own slice of the proofs (a proof is single
-- use: when a thread runs out it starts over, and the server refuses the replays as non-2xx).
local threads_started = 0
local proofs = {}
local next_proof = 1

function setup(thread)
  thread:set("thread_id", threads_started)
  threads_started = threads_started + 1
end

function init(args)
  local file = os.getenv("PROOFS")
  if file and file ~= "" then
    local threads = tonumber(os.getenv("THREADS") or "1")
    local i = 0
    for line in io.lines(file) do
      if i % threads == thread_id then proofs[#proofs + 1] = line end
      i = i + 1
    end
  end
end

wrk.method = "POST"
wrk.body = "grant_type=client_credentials&scope=api"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BASIC_AUTH")

function request()
  if #proofs > 0 then
    wrk.headers["DPoP"] = proofs[next_proof]
    next_proof = next_proof % #proofs + 1
  end
  return wrk.format()
end

-- The same summary line as bench/gateway.lua.
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f requests=%d non2xx=%d socket_errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
