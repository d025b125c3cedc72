-- wrk script for bench/ingress.py: realistic ~1.1 KB fee pushes (one CDR each, unique sessionId per request).
-- INGRESS_RATE (env, requests/s): pushes sent at that rate whatever the server's latency (an open load, as the
-- platform's pushes are; a closed loop's rate follows the latency, and tuning a pause to hit a rate overshot or
-- undershot it by up to 20 %). Send times are a Poisson stream (exponential gaps of mean 1/rate; fixed gaps would
-- keep the connections in lock-step) shared by the connections: each request takes the next one, on whichever
-- connection is free. A server that falls behind gets the late requests at once, at most a second's worth.
local counter = 0
local thread_id = tostring(math.random(100000, 999999))
local rate = tonumber(os.getenv("INGRESS_RATE") or "0")
local path = os.getenv("INGRESS_PATH") or "/notify/fee"
local headers = { ["Content-Type"] = "application/json;charset=UTF-8" }
-- INGRESS_SIGNATURES (env): a file of X-AKSK values signed in advance (one per line, each nonce used once).
local signatures = {}
local signature_file = os.getenv("INGRESS_SIGNATURES")
if signature_file then
  for line in io.lines(signature_file) do signatures[#signatures + 1] = line end
  headers["Authorization"] = 'AKSK realm="SDP",profile="UsernameToken",type="Appkey"'
end
local template = '{"eventType":"fee","feeLst":[{"appKey":"cJU9QxBt53ZytKo9X8C35Z5c6pvi","bindNum":"+8675566660000",'
  .. '"callEndTime":"2019-01-24 03:04:49","callOutAlertingTime":"2019-01-24 03:04:26","callOutAnswerTime":'
  .. '"2019-01-24 03:04:31","callOutStartTime":"2019-01-24 03:04:24","callOutUnaswRsn":0,"calleeNum":"+8613800000021",'
  .. '"callerNum":"+8675566660000","direction":0,"fwdAlertingTime":"2019-01-24 03:04:36","fwdAnswerTime":'
  .. '"2019-01-24 03:04:38","fwdDisplayNum":"+8675566660000","fwdDstNum":"+8613800000022","fwdStartTime":'
  .. '"2019-01-24 03:04:31","fwdUnaswRsn":0,"icid":"9c2012a5bcb2721681009cb6c245fdc3.3663053204.1117803.14",'
  .. '"recordFlag":1,"recordStartTime":"2019-01-24 03:04:38","recordObjectName":"1200_366_0_20190124030424.wav",'
  .. '"recordBucketName":"sdp-record","recordDomain":"ostor.huawei.com","serviceType":"002","hostName":'
  .. '"callenabler245.huaweicaas.com","sessionId":"%s","spId":"dial010314322991","ulFailReason":0,'
  .. '"sipStatusCode":0,"userData":"customer-%d","ttsPlayTimes":0,"ttsTransDuration":0}]}'

request = function()
  counter = counter + 1
  if #signatures > 0 then headers["X-AKSK"] = signatures[(counter - 1) % #signatures + 1] end
  local session = string.format("1200_%s_%d_20190124030424@callenabler245.huaweicaas.com", thread_id, counter)
  return wrk.format("POST", path, headers, string.format(template, session, counter))
end

if rate > 0 then
  local ffi = require("ffi")  -- wrk's LuaJIT: Lua itself has no millisecond clock
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock, bench_timespec *now);
  ]]
  local ts = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local slot = now_ms()
  delay = function()  -- ms to wait before this connection's next request (wrk takes whole ms)
    local now = now_ms()
    slot = math.max(slot, now - 1000) - math.log(1 - math.random()) * 1000 / rate
    return math.floor(math.max(0, slot - now) + 0.5)
  end
end
