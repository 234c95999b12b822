-- wrk script for benches/load.sh, scenarios (c) and (f): every request carries a bearer token from a file of
-- access tokens (one per line, written by examples/session_loader.rs).
--   wrk -s benches/random_token.lua URL -- TOKEN_FILE          a token chosen at random for each request, so
--                                                              the requests spread over all the live sessions;
--   wrk -t N -s benches/random_token.lua URL -- TOKEN_FILE N   the tokens in order (the warm-up: every session
--                                                              requested; thread k of N takes lines k, k+N, ...
--                                                              and starts over at the end).
local tokens = {}
local in_order = false
local next_index = 1
local step = 1
local threads_made = 0

function setup(thread)
    thread:set("thread_number", threads_made)
    threads_made = threads_made + 1
end

function init(args)
    local path = args[1]
    if not path then
        error("usage: wrk -s random_token.lua URL -- TOKEN_FILE [THREADS]")
    end
    for line in io.lines(path) do
        if #line > 0 then
            tokens[#tokens + 1] = "Bearer " .. line
        end
    end
    if #tokens == 0 then
        error(path .. " holds no tokens")
    end
    if args[2] then
        in_order = true
        step = tonumber(args[2]) or 1
        next_index = (thread_number or 0) % #tokens + 1
    end
    -- Each wrk thread has its own Lua state: seed each differently (a fresh table's address differs).
    local address = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
    math.randomseed(os.time() + address % 1000003)
end

function request()
    if in_order then
        wrk.headers["Authorization"] = tokens[next_index]
        next_index = next_index + step
        if next_index > #tokens then
            next_index = (next_index - 1) % #tokens + 1
        end
    else
        wrk.headers["Authorization"] = tokens[math.random(#tokens)]
    end
    return wrk.format()
end
