-- wrk script for benches/load.sh, scenario (c): every request carries a bearer token chosen at random from a
-- file of access tokens (one per line, written by examples/session_loader.rs), so the requests spread over
-- all the live sessions. Usage: wrk -s benches/random_token.lua URL -- TOKEN_FILE
local tokens = {}

function init(args)
    local path = args[1]
    if not path then
        error("usage: wrk -s random_token.lua URL -- TOKEN_FILE")
    end
    for line in io.lines(path) do
        if #line > 0 then
            tokens[#tokens + 1] = "Bearer " .. line
        end
    end
    if #tokens == 0 then
        error(path .. " holds no tokens")
    end
    -- Each wrk thread has its own Lua state: seed each differently (a fresh table's address differs).
    local address = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
    math.randomseed(os.time() + address % 1000003)
end

function request()
    wrk.headers["Authorization"] = tokens[math.random(#tokens)]
    return wrk.format()
end
