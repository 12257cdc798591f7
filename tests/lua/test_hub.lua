-- chai.hub from Lua against the loopback Hub (tests/hub/hub_server, started here; it stops on
-- /__quit at the end and by itself after 60 s): download, optional files, snapshot at one commit,
-- the weights choice (safetensors if present, else .bin), locate, offline, tokens, the HTTP GET,
-- bad arguments, and the `chai download` subcommand.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"
local hub = chai.hub

local C_MAIN = "3c8e1a4f5b6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"
local C_PR1 = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
local TOKEN = "hf_chai_test_token_0123456789"

local server_bin = os.getenv("CHAI_HUB_SERVER") or
  ((os.getenv("CHAI_BUILD_DIR") or "build") .. "/tests/chai_test_hub_server")
local tmp = T.tmpdir()
local cache = tmp .. "/cache"
local server = assert(io.popen("'" .. server_bin .. "' --log '" .. tmp .. "/server.log' " ..
                               "--lifetime 60 --idle 30"))
local ports = server:read("l")
local hub_port = ports and ports:match("^(%d+)")
if not hub_port then error("the test server " .. server_bin .. " did not start") end
local endpoint = "http://127.0.0.1:" .. hub_port
local O = {endpoint = endpoint, cache_dir = cache, quiet = true, token = ""}

local function with(extra)
  local o = {}
  for k, v in pairs(O) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- download: a path in the snapshot of the commit, and what the file holds
local path, info = hub.download("org/tiny", "config.json", O)
T.eq(path, cache .. "/models--org--tiny/snapshots/" .. C_MAIN .. "/config.json", "snapshot path")
T.eq(T.read_bytes(path), "{\"model_type\": \"opt\", \"hidden_size\": 16}\n", "config.json bytes")
T.eq(info.commit, C_MAIN, "commit")
T.eq(info.cached, false, "first download is not cached")
T.check(#info.etag == 40 and info.size == #T.read_bytes(path), "etag and size")
T.eq(T.read_bytes(cache .. "/models--org--tiny/refs/main"), C_MAIN, "refs/main")
local _, again = hub.download("org/tiny", "config.json", O)
T.eq(again.cached, true, "second download is cached")

-- an LFS file at a PR ref; a missing file, optional or not
path, info = hub.download("org/tiny", "model.safetensors", with {revision = "refs/pr/1"})
T.eq(info.commit, C_PR1, "refs/pr/1 commit")
T.eq(info.etag, "3885a2612d794f3bacb41f6612918dbed7b7e9fd4c0ec7f5de0df864386c44ca", "LFS etag")
T.eq(#T.read_bytes(path), 200000, "LFS size")
local none, msg = hub.download("org/tiny", "model.safetensors", with {optional = true})
T.eq(none, nil, "optional missing file gives nil")
T.check(msg and msg:find("model.safetensors", 1, true) and msg:find("not found", 1, true),
        "optional missing file message: " .. tostring(msg))
T.raises(function() hub.download("org/tiny", "model.safetensors", O) end,
         {"model.safetensors", "org/tiny", "main", "404"})
T.raises(function() hub.download("org/nope", "config.json", with {optional = true}) end,
         {"org/nope", "not found"}, "a missing repo is an error even for optional files")
T.raises(function() hub.download("org/tiny", "config.json", with {optional = true, revision = "v9"}) end,
         {"revision 'v9' not found"}, "so is a missing revision")

-- snapshot: one commit, optional files skipped
local snap, sinfo = hub.snapshot("org/tiny", with {files = {"config.json", "vocab.json"},
                                                   optional = {"special_tokens_map.json",
                                                               "tokenizer_config.json"}})
T.eq(snap, cache .. "/models--org--tiny/snapshots/" .. C_MAIN, "snapshot folder")
T.eq(sinfo.files, {"config.json", "vocab.json", "tokenizer_config.json"}, "fetched files")
T.eq(sinfo.missing, {"special_tokens_map.json"}, "skipped files")
T.check(exists(snap .. "/vocab.json") and exists(snap .. "/tokenizer_config.json"), "files present")
T.raises(function() hub.snapshot("org/tiny", with {files = {"nope.json"}}) end, {"nope.json"})
T.raises(function() hub.snapshot("org/tiny", with {files = {1}}) end, {"files[1]"})

-- the weights: .bin on main, safetensors on refs/pr/1 (as facebook/opt-125m)
local names, commit = hub.weights("org/tiny", O)
T.eq(names, {"pytorch_model.bin"}, "main has only the .bin")
T.eq(commit, C_MAIN, "weights commit")
names, commit = hub.weights("org/tiny", with {revision = "refs/pr/1"})
T.eq(names, {"model.safetensors"}, "refs/pr/1 has safetensors")
T.eq(commit, C_PR1, "weights commit at the PR")
T.raises(function() hub.weights("org/data", with {repo_type = "dataset"}) end,
         {"org/data", "pytorch_model.bin"})

-- locate: a local folder as is; a repo id is fetched (config, tokenizer, weights)
T.eq(hub.locate(tmp, O), tmp, "a local folder")
local mdir = hub.locate("org/tiny", with {cache_dir = tmp .. "/cache2"})
T.eq(mdir, tmp .. "/cache2/models--org--tiny/snapshots/" .. C_MAIN, "locate fetches the repo")
for _, f in ipairs({"config.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                    "pytorch_model.bin"}) do
  T.check(exists(mdir .. "/" .. f), "locate fetched " .. f)
end
T.check(not exists(mdir .. "/special_tokens_map.json"), "no special_tokens_map.json")

-- datasets
path = hub.download("org/data", "train.jsonl", with {repo_type = "dataset"})
T.check(path:find("/datasets--org--data/snapshots/", 1, true) ~= nil, "dataset folder")
T.eq(hub.repo_folder("org/data", "dataset"), "datasets--org--data", "repo_folder")

-- offline: the cache only
path = hub.download("org/tiny", "config.json", with {offline = true, endpoint = "http://127.0.0.1:1"})
T.check(exists(path), "offline hit")
T.raises(function() hub.download("org/tiny", "merges.txt", with {offline = true}) end,
         {"merges.txt", "org/tiny", "main", "offline"})
none, msg = hub.download("org/tiny", "model.safetensors", with {offline = true, optional = true})
T.check(none == nil and msg:find("does not exist", 1, true), "offline .no_exist is optional-missing")
T.eq(hub.snapshot("org/tiny", with {offline = true}), snap, "snapshot folder from the cache")

-- tokens
T.raises(function() hub.download("org/private", "config.json", O) end, {"401", "HF_TOKEN"})
path = hub.download("org/private", "config.json", with {token = TOKEN})
T.eq(T.read_bytes(path), "{\"private\": true}\n", "private file with a token")

-- HTTP GET
local body = hub.http_get(endpoint .. "/api/echo", {["X-Test"] = "hi there"})
T.check(body:find("hi there", 1, true) ~= nil, "header map sent: " .. body)
body = hub.http_get(endpoint .. "/api/echo", {"X-Test: listed"})
T.check(body:find("listed", 1, true) ~= nil, "header list sent")
local json = chai.json or require("chai.core").json
T.eq(json.decode(body).port, "hub", "JSON body")
local status
body, status = hub.http_fetch(endpoint .. "/api/error")
T.eq(status, 500, "http_fetch status")
T.raises(function() hub.http_get(endpoint .. "/api/error") end, {"500", "boom from the test server"})
T.raises(function() hub.http_get("http://127.0.0.1:1/") end, {"127.0.0.1"})
T.raises(function() hub.http_get(endpoint, {{}}) end, {"headers"})

-- bad arguments
T.raises(function() hub.download() end, {"bad argument #1"})
T.raises(function() hub.download("org/tiny") end, {"bad argument #2"})
T.raises(function() hub.download("org/tiny", "x", {revison = "main"}) end, {"unknown option 'revison'"})
T.raises(function() hub.download("org/tiny", "x", {revision = 3}) end, {"'revision' must be a string"})
T.raises(function() hub.download("org/tiny", "x", with {repo_type = "bogus"}) end, {"'bogus'"})
T.raises(function() hub.download("org/tiny", "../x", O) end, {"'../x'"})
T.raises(function() hub.download("a/b/c", "x", O) end, {"'a/b/c'"})
T.raises(function() hub.snapshot("org/tiny", "main") end, {"options must be a table"})
T.raises(function() hub.locate(42) end, {"folder or a Hub repo id"})
T.eq(hub.cache_dir({cache_dir = "/some/where"}), "/some/where", "cache_dir option")
T.eq(type(hub.cache_dir()), "string", "cache_dir default")

-- `chai download`
local cli = require "chai.cli"
T.check(cli.commands.download ~= nil, "chai.cli has the download command")
local chai_bin = (os.getenv("CHAI_BUILD_DIR") or "build") .. "/chai"
local env = string.format("HF_ENDPOINT=%s HF_HUB_CACHE='%s/cache3' HF_HOME='%s/home' HF_TOKEN= " ..
                          "HF_TOKEN_PATH= HF_HUB_OFFLINE= ", endpoint, tmp, tmp)
local function run(args)
  local p = io.popen(env .. "'" .. chai_bin .. "' download " .. args .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end
local out, code = run("org/tiny config.json")
T.eq(code, 0, "chai download FILE exit status")
T.eq(out, tmp .. "/cache3/models--org--tiny/snapshots/" .. C_MAIN .. "/config.json\n", "prints the path")
out, code = run("org/tiny --revision refs/pr/1")
T.eq(code, 0, "chai download REPO exit status: " .. out)
local pr_dir = tmp .. "/cache3/models--org--tiny/snapshots/" .. C_PR1
T.eq(out, pr_dir .. "\n", "prints the snapshot folder")
T.check(exists(pr_dir .. "/model.safetensors") and not exists(pr_dir .. "/pytorch_model.bin"),
        "safetensors preferred when present")
T.check(exists(pr_dir .. "/merges.txt") and exists(pr_dir .. "/config.json"), "default files")
out, code = run("org/tiny vocab.json merges.txt --revision=" .. C_MAIN)
T.eq(out, tmp .. "/cache3/models--org--tiny/snapshots/" .. C_MAIN .. "\n", "two files: the folder")
out, code = run("org/tiny nope.json")
T.eq(code, 1, "a missing file fails")
T.check(out:find("nope.json", 1, true) ~= nil, "and names it")
out, code = run("")
T.eq(code, 2, "no REPO is bad usage")
out, code = run("org/tiny --bogus")
T.eq(code, 2, "an unknown option is bad usage")
T.check(out:find("--bogus", 1, true) ~= nil, "and names it")
out, code = run("org/data --repo-type dataset")
T.eq(code, 2, "a dataset needs FILEs")

-- the Lua examples of docs/hub.md run against this server (they name facebook/opt-125m, which it
-- serves as org/tiny) and assert their own claims
local source = os.getenv("CHAI_SOURCE_DIR") or (dir .. "../..")
local doc = T.read_bytes(source .. "/docs/hub.md")
local nblocks = 0
for block in doc:gmatch("\n```lua\n(.-)\n```") do
  nblocks = nblocks + 1
  local file = string.format("%s/doc_block_%d.lua", tmp, nblocks)
  T.write_bytes(file, block)
  local p = io.popen(string.format("HF_ENDPOINT=%s HF_HUB_CACHE='%s/cache-docs' HF_HOME='%s/home' " ..
                                   "HF_TOKEN= HF_TOKEN_PATH= HF_HUB_OFFLINE= '%s' script '%s' 2>&1",
                                   endpoint, tmp, tmp, chai_bin, file))
  local text = p:read("a")
  T.check(p:close(), "docs/hub.md lua block " .. nblocks .. " runs: " .. text)
end
T.check(nblocks >= 2, "docs/hub.md has lua blocks")

-- stop the server (it would stop by itself after 60 s)
hub.http_fetch(endpoint .. "/__quit")
server:close()
T.finish()
